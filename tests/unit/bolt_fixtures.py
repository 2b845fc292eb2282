"""Helpers for bolt tests: a bolt on a real SQLite store, fed and flushed without sockets.

The feeding and flushing are the package's harness (analytics/testing.py: the
runtime's own receive and flush paths, a publisher that records what the bolt
emits); here are the test games, their zones and a gamelog tuple maker.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from analytics import testing
from analytics.component import Bolt
from analytics.config import GameSettings, load_settings
from analytics.store import open_store
from analytics.testing import feed, flush, run  # noqa: F401  (the bolt tests import them from here)
from analytics.tuples import Tuple, derived_id

#: Two games in different zones: 'dl' in UTC+8 (the seed's data), 'wsdx' in New York.
ZONES = {"dl": "Asia/Shanghai", "wsdx": "America/New_York"}
AREA = "549140c8dbdb67794fc0fa3b"


def settings_for(tmp_path: Path):
    s = load_settings(env={}, data_dir=str(tmp_path / "data"))
    s.games = {g: GameSettings(g, tz) for g, tz in ZONES.items()}
    return s


def open_test_store(tmp_path: Path):
    return open_store(f"sqlite:///{tmp_path / 'stats.db'}")


def make_bolt(cls: type[Bolt], tmp_path: Path, store=None, **options: Any) -> Bolt:
    """A bolt over `store` with the two test games' zones, its data under tmp_path."""
    return testing.make_bolt(cls, settings_for(tmp_path), store, **options)


def gamelog(code: str, uid: str, ts: int, *, game: str = "dl", area: str = AREA, plat: str = "2001",
            id: str | None = None, **data: Any) -> Tuple:
    """A gamelog tuple as the gamelog spout emits it."""
    d = {"corpid": int(plat) if plat.isdigit() else plat, "type": code.split("_")[0], "server_name": "server1009",
         "opno": 1003, "opname": code, "acct": uid, **data}
    body = {"game": game, "area": area, "plat": plat, "uid": uid, "ts": ts, "code": code, "data": d}
    return Tuple(f"gamelog.{code}", id or derived_id(code, game, area, plat, uid, ts, sorted(data.items())), ts,
                 body)
