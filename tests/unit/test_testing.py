"""The bolt test harness (analytics/testing.py) runs the runtime's own receive and flush paths."""
from __future__ import annotations

import gevent
import pytest

from analytics.testing import RecordingPublisher, feed, flush, run, tick, wait_until
from bolts.coin import CoinDayBolt
from bolts.login import LoginHourBolt
from tests.unit.bolt_fixtures import AREA, gamelog, make_bolt, open_test_store

pytestmark = pytest.mark.timeout(30)

DAY8 = 1420646400   # 2015-01-08 00:00 +08:00


def coin(uid: str, change: int, ts: int = DAY8 + 60, **kw):
    return gamelog("coin_logchange", uid, ts, coin_type="yuanbao", change=change, reason="shop", **kw)


def test_a_dedupe_bolt_counts_a_record_once_however_often_it_is_fed(tmp_path) -> None:
    store = open_test_store(tmp_path)
    bolt = make_bolt(CoinDayBolt, tmp_path, store)
    t = coin("u1", -5)
    feed(bolt, [t, t])
    assert store.find("coinday") == []                 # buffered until the flush, as the loop does
    flush(bolt)
    run(bolt, [t])                                     # a replay of the same record
    assert store.find("coinday")[0]["consumed"] == 5
    assert bolt.counters.deduplicated == 2 and bolt.counters.received == {"gamelog.coin_logchange": 3}


def test_a_bad_record_is_counted_and_dead_lettered_and_the_rest_counted(tmp_path) -> None:
    store = open_test_store(tmp_path)
    bolt = make_bolt(LoginHourBolt, tmp_path, store)
    bad = gamelog("login_logcount", "u1", DAY8)
    bad.body["uid"] = ""
    sent = run(bolt, [bad, gamelog("login_logcount", "u2", DAY8, area=AREA)])
    assert bolt.counters.errors == 1
    assert "body.uid must be a non-empty string" in (tmp_path / "data" / "deadletter" / "loginhour.jsonl").read_text()
    assert store.find("loginhour")[0]["count"] == 1
    assert isinstance(bolt.publisher, RecordingPublisher) and bolt.publisher.sent == sent and sent


def test_tick_runs_the_tick_hook_with_the_contexts_clock_then_flushes(tmp_path) -> None:
    store = open_test_store(tmp_path)
    bolt = make_bolt(CoinDayBolt, tmp_path, store)
    seen: list[float] = []
    bolt.tick = seen.append                            # type: ignore[method-assign]
    bolt.ctx.clock = lambda: 123.0
    feed(bolt, [coin("u1", 7)])
    tick(bolt)
    assert seen == [123.0] and store.find("coinday")[0]["gained"] == 7


def test_wait_until_lets_other_greenlets_run_and_gives_up_at_the_timeout() -> None:
    flag: list[int] = []
    gevent.spawn_later(0.05, flag.append, 1)
    assert wait_until(lambda: flag, 5)
    assert not wait_until(lambda: False, 0.05)
