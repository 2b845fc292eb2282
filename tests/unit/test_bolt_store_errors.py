"""A store that refuses for good (not an outage) dead-letters the whole batch; the bolt goes on
(issue 19, item 4: `_with_store` returned True and `_flush` died on `t.id in True`)."""
from __future__ import annotations

import json

import pytest

from analytics.store.base import StoreError
from bolts.coin import CoinDayBolt
from tests.unit.bolt_fixtures import feed, flush, gamelog, make_bolt, open_test_store

pytestmark = pytest.mark.timeout(20)

TS = 1420688004


def coin(uid: str, change: int, i: int):
    return gamelog("coin_logchange", uid, TS + i, id=f"c{i}", coin_type="yuanbao", change=change,
                   reason="shop", rest=100)


def _letters(tmp_path, name: str) -> list[dict]:
    path = tmp_path / "data" / "deadletter" / f"{name}.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def test_a_refused_seen_lookup_dead_letters_the_buffer_and_the_bolt_goes_on(tmp_path, monkeypatch):
    store = open_test_store(tmp_path)
    bolt = make_bolt(CoinDayBolt, tmp_path, store)
    real = store.unseen
    calls = []

    def broken(scope, ids):
        calls.append(len(ids))
        if len(calls) == 1:
            raise StoreError("database disk image is malformed")
        return real(scope, ids)
    monkeypatch.setattr(store, "unseen", broken)
    feed(bolt, [coin("u1", -5, 1), coin("u2", -7, 2)])
    assert flush(bolt) == [] and bolt.counters.errors == 1       # no TypeError: the bolt is alive
    (letter,) = _letters(tmp_path, "coinday")
    assert letter["reason"].startswith("store: looking up seen ids: database disk image is malformed")
    assert [t[1] for t in letter["raw"]["tuples"]] == ["c1", "c2"]
    feed(bolt, [coin("u3", -11, 3)])
    flush(bolt)
    (doc,) = store.find("coinday")
    assert doc["consumed"] == 11                                   # the next batch is stored
    store.close()


def test_a_refused_batch_is_dead_lettered_whole_and_the_next_one_is_stored(tmp_path, monkeypatch):
    store = open_test_store(tmp_path)
    bolt = make_bolt(CoinDayBolt, tmp_path, store)
    real = store.apply
    calls = []

    def broken(batch):
        calls.append(batch)
        if len(calls) == 1:
            raise StoreError("constraint failed")
        return real(batch)
    monkeypatch.setattr(store, "apply", broken)
    feed(bolt, [coin("u1", -5, 1)])
    flush(bolt)
    assert bolt.counters.errors == 1
    (letter,) = _letters(tmp_path, "coinday")
    assert letter["reason"] == "store: applying a batch: constraint failed"
    assert letter["raw"]["upserts"] and letter["raw"]["seen"] == {"coinday": ["c1"]}
    feed(bolt, [coin("u2", -7, 2)])
    flush(bolt)
    assert store.find("coinday")[0]["consumed"] == 7
    store.close()
