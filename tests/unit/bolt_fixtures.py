"""Helpers for bolt tests: a bolt on a real SQLite store, fed and flushed without sockets.

`flush` runs the base class's own flush path (dedupe against the store, flush(),
apply, after_flush) with a publisher stand-in that records what the bolt emits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from analytics.component import Bolt, Context
from analytics.config import GameSettings, load_settings
from analytics.store import open_store
from analytics.tuples import Tuple, derived_id

#: Two games in different zones: 'dl' in UTC+8 (the seed's data), 'wsdx' in New York.
ZONES = {"dl": "Asia/Shanghai", "wsdx": "America/New_York"}
AREA = "549140c8dbdb67794fc0fa3b"


class RecordingPublisher:
    """Stands in for the transport publisher: keeps (topic, id, ts, body)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int, dict[str, Any]]] = []

    def send(self, topic: str, id: str, ts: int, body: dict[str, Any], partition: int) -> None:
        self.sent.append((topic, id, ts, body))

    def flush(self) -> None:
        pass


def settings_for(tmp_path: Path):
    s = load_settings(env={}, data_dir=str(tmp_path / "data"))
    s.games = {g: GameSettings(g, tz) for g, tz in ZONES.items()}
    return s


def open_test_store(tmp_path: Path):
    return open_store(f"sqlite:///{tmp_path / 'stats.db'}")


def make_bolt(cls: type[Bolt], tmp_path: Path, store=None, **options: Any) -> Bolt:
    ctx = Context(settings_for(tmp_path), zmq=None, receiver="inproc://unused", sender="inproc://unused",
                  store=store)
    bolt = cls(ctx, **options)
    bolt.publisher = RecordingPublisher()
    return bolt


def feed(bolt: Bolt, tuples: list[Tuple]) -> None:
    """What the loop does on receipt: dedupe bolts buffer (deduped at flush), others process now."""
    for t in tuples:
        bolt._pending += 1
        if bolt.dedupe:
            bolt._buffer.append(t)
        else:
            bolt._safely(bolt.process, t, raw=t.body)


def flush(bolt: Bolt) -> list[tuple[str, str, int, dict[str, Any]]]:
    """Run the base class flush; return what was published by it."""
    pub: RecordingPublisher = bolt.publisher
    start = len(pub.sent)
    bolt._flush()
    return pub.sent[start:]


def run(bolt: Bolt, tuples: list[Tuple]) -> list[tuple[str, str, int, dict[str, Any]]]:
    feed(bolt, tuples)
    return flush(bolt)


def gamelog(code: str, uid: str, ts: int, *, game: str = "dl", area: str = AREA, plat: str = "2001",
            id: str | None = None, **data: Any) -> Tuple:
    """A gamelog tuple as the gamelog spout emits it."""
    d = {"corpid": int(plat) if plat.isdigit() else plat, "type": code.split("_")[0], "server_name": "server1009",
         "opno": 1003, "opname": code, "acct": uid, **data}
    body = {"game": game, "area": area, "plat": plat, "uid": uid, "ts": ts, "code": code, "data": d}
    return Tuple(f"gamelog.{code}", id or derived_id(code, game, area, plat, uid, ts, sorted(data.items())), ts,
                 body)
