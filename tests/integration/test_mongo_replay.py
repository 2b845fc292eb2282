"""The sample replay over SecantusDB (MongoDB wire protocol), in both layouts.

Every sample source of data/ is replayed in one command into a SQLite store (the
baseline), then into a fresh database on SecantusDB (or on $ANALYTICS_TEST_MONGO_URL)
with the whole topology in one process, and with `--mode tcp --workers 2` (the
spouts in one worker process, the bolts in another, each with its own MongoStore).
Every document of every collection, userlists included, equals the SQLite run's.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from analytics.config import GameSettings, Settings, load_settings
from analytics.sample import DEFAULT_GAMES
from tests.integration.test_split_replay import SOURCES, _differences, _dump, _replay
from tests.mongo_server import drop_database, mongo_database_url

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def _settings(tmp: Path, store: str, **more) -> Settings:
    settings = load_settings(env={}, data_dir=str(tmp / "data"), store=store, **more)
    settings.games = {g: GameSettings(g, tz) for g, tz in DEFAULT_GAMES.items()}
    return settings


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sqlite")
    settings = _settings(tmp, f"sqlite:///{tmp / 'one.db'}")
    _replay(settings, SOURCES)
    return _dump(settings)


@pytest.mark.parametrize("layout", [{}, {"mode": "tcp", "workers": 2}], ids=["inproc", "tcp-workers-2"])
def test_the_sample_replay_on_secantusdb_equals_the_sqlite_one(tmp_path, sqlite_run, layout):
    url = mongo_database_url()
    try:
        settings = _settings(tmp_path, url, **layout)
        t0 = time.monotonic()
        _replay(settings, SOURCES)
        seconds = time.monotonic() - t0
        got = _dump(settings)
    finally:
        drop_database(url)
    assert _differences(sqlite_run, got) == []
    assert sum(map(len, got.values())) == sum(map(len, sqlite_run.values())) > 0
    assert sqlite_run["server"] and sqlite_run["loginday"], "the sample has server and login days"
    print(f"{layout or 'inproc'}: {sum(map(len, got.values()))} documents over {len(got)} collections "
          f"equal; replay on SecantusDB (MongoDB wire protocol) {seconds:.1f}s")
