"""Replays as an operator runs them after an outage: one source at a time, in any order.

Each replay below is its own runner on one store (what separate `analytics replay`
commands are); the store they leave must equal, document for document and
userlist for userlist, the store one replay of the same files leaves. And every
document of every collection carries every field its bolt documents.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from analytics.app import replay, source_spec
from analytics.config import GameSettings, Settings, load_settings
from analytics.query import query
from analytics.sample import DEFAULT_GAMES
from analytics.schema import all_collections
from analytics.store import open_store
from analytics.topology import ComponentSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

DATA = Path(__file__).resolve().parents[2] / "data"
#: Every sample source of data/.
SOURCES = ["gamelog_dl", "gamelog_wsdx", "payment", "syncuser"]


def _settings(tmp: Path, name: str) -> Settings:
    settings = load_settings(env={}, data_dir=str(tmp / f"data_{name}"), store=f"sqlite:///{tmp / name}.db")
    settings.games = {g: GameSettings(g, tz) for g, tz in DEFAULT_GAMES.items()}
    return settings


def _spec(settings: Settings, source: str) -> ComponentSpec:
    """The spout one sample file gets: 'gamelog_dl', 'payment', 'syncuser', ..."""
    if source.startswith("gamelog_"):
        game = source.split("_", 1)[1]
        spec = source_spec(settings, "gamelog", [str(DATA / f"{source}_sample.txt")], game)
        return dataclasses.replace(spec, name=f"replay_{source}")
    return source_spec(settings, source, [str(DATA / f"{source}_sample.txt")], None)


def _replay(settings: Settings, sources: list[str]) -> None:
    report = replay(settings, [_spec(settings, s) for s in sources], progress=False, timeout=150)
    assert report.problems() == [], report.problems()
    assert report.totals()["errors"] == 0


def _dump(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every document of every collection, with its userlist where it has one, in a stable order.

    Left out: userlevel documents of count 0, which docs/collections.md declares the same
    as absent ones (a grade nobody holds any more; which exist depends on the flushes).
    """
    with open_store(settings.store) as store:
        return {name: sorted((d for d in query(store, name, userlist=True)
                              if not (name == "userlevel" and d["count"] == 0)),
                             key=lambda d: sorted((k, str(v)) for k, v in d.items()))
                for name in sorted(all_collections())}


def _differences(want: dict[str, list[dict]], got: dict[str, list[dict]]) -> list[str]:
    out = []
    for name in want:
        w, g = want[name], got[name]
        if w != g:
            missing = [d for d in w if d not in g]
            extra = [d for d in g if d not in w]
            out.append(f"{name}: {len(w)} documents in one replay, {len(g)} split; "
                       f"{len(missing)} missing or different, e.g. {missing[:1]}; {len(extra)} unexpected, "
                       f"e.g. {extra[:1]}")
    return out


@pytest.fixture(scope="module")
def one_command(tmp_path_factory):
    """Every sample source in one replay: the store the split replays must reproduce."""
    settings = _settings(tmp_path_factory.mktemp("one"), "one")
    _replay(settings, SOURCES)
    return _dump(settings)


@pytest.mark.parametrize("runs", [
    [["gamelog_dl", "gamelog_wsdx"], ["payment"], ["syncuser"]],
    [["syncuser"], ["payment"], ["gamelog_wsdx"], ["gamelog_dl"]],
], ids=["gamelog-then-payment-then-syncuser", "each-source-alone-reversed"])
def test_replays_one_source_at_a_time_give_the_store_of_one_replay(tmp_path, one_command, runs):
    settings = _settings(tmp_path, "split")
    for sources in runs:
        _replay(settings, sources)
    got = _dump(settings)
    assert _differences(one_command, got) == []
    assert sum(map(len, got.values())) == sum(map(len, one_command.values())) > 0
    assert one_command["server"], "the sample has server days"
    print(f"compared {sum(map(len, got.values()))} documents over {len(got)} collections")


def test_gamelog_then_payment_in_two_replays_equals_both_in_one(tmp_path):
    """The issue's case: the gamelog of one game, then the payment log, in separate replays."""
    one = _settings(tmp_path, "both")
    _replay(one, ["gamelog_dl", "payment"])
    split = _settings(tmp_path, "split")
    _replay(split, ["gamelog_dl"])
    _replay(split, ["payment"])
    want, got = _dump(one), _dump(split)
    assert _differences(want, got) == []
    assert len(want["server"]) > 0
    print(f"compared {sum(map(len, want.values()))} documents over {len(want)} collections")


def _gaps(dump: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Per collection, the documented fields some of its documents lack."""
    catalogue = all_collections()
    gaps: dict[str, set[str]] = {}
    for name, docs in dump.items():
        fields = set(catalogue[name].key) | set(catalogue[name].fields)
        for d in docs:
            lacking = fields - d.keys()
            if lacking:
                gaps.setdefault(name, set()).update(lacking)
    return {n: sorted(f) for n, f in sorted(gaps.items())}


def test_every_document_has_every_documented_field(one_command):
    assert _gaps(one_command) == {}
    empty = sorted(n for n, docs in one_command.items() if not docs)
    assert empty == [], f"the sample writes no {empty} document: the check above saw none of their fields"


@pytest.mark.parametrize("source", ["gamelog_dl", "payment", "syncuser"])
def test_a_replay_of_one_source_writes_every_documented_field_too(tmp_path, source):
    """Days without payments, users without payments or without a syncuser record: 0, not absent."""
    settings = _settings(tmp_path, source)
    _replay(settings, [source])
    dump = _dump(settings)
    assert sum(map(len, dump.values())) > 0
    assert _gaps(dump) == {}
