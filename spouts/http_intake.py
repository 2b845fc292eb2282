"""The HTTP intake spout: events POSTed (or sent by a GIF beacon) to a gevent WSGI server.

initialize() starts the server on [http] host/port (default 127.0.0.1:8600;
port 0 picks a free one, see `port`) serving analytics.web's falcon app: the
intake routes, plus the stats API and dashboard when the spout has a store.
Handlers validate events and put them on a bounded queue; next_tuple drains up
to `drain_per_call` of them and emits each on "gamelog.<code>" with the gamelog
spout's body {game, area, plat, uid, ts, code, data}, id = record_id of the
event's canonical JSON, raw = that canonical JSON (so data/http_*.txt holds
what was accepted). A full queue answers 503 + Retry-After.

Replaying its disk log: the same spout with `files=[...]` reads the lines
instead of serving HTTP (validation and ids are the same).
"""
from __future__ import annotations

from typing import Any, ClassVar

import gevent.event

from analytics.component import Context
from analytics.sources import Reader
from analytics.store import open_store
from analytics.web.events import Accepted, validate
from analytics.web.intake import Intake, IntakeSettings
from spouts.base import SourceSpout, parse_object
from spouts.gamelog import GAMELOG_CODES

__all__ = ["HttpIntakeSpout"]


class _Idle:
    """The reader of a serving spout: the queue is read by next_tuple itself."""
    health = {"state": "ok", "reason": ""}

    def read(self, max_records: int) -> list[bytes]:
        return []

    def commit(self, force: bool = False) -> None:
        pass

    def progress(self) -> tuple[int, int | None]:
        return 0, None

    def close(self) -> None:
        pass


class HttpIntakeSpout(SourceSpout):
    name = "http"
    source = "http"
    emits = tuple(f"gamelog.{code}" for code in GAMELOG_CODES)
    #: Events emitted per next_tuple call (the [http] drain_per_call option overrides it).
    drain_per_call: ClassVar[int] = 500

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        self.http_table: dict[str, Any] = dict(ctx.settings.extra.get("http", {}))
        super().__init__(ctx, name, **options)
        self.intake_settings = IntakeSettings.from_table(self.http_table)
        self.intake: Intake | None = None
        self.server: Any = None
        self._own_store: Any = None
        self.live: Any = None
        #: Set once the server listens (tests and the bench wait on it).
        self.ready = gevent.event.Event()
        self.drain_per_call = int(self.http_table.get("drain_per_call", type(self).drain_per_call))

    def _make_reader(self) -> Reader:
        if self.option("files"):
            return super()._make_reader()
        return _Idle()

    @property
    def serving(self) -> bool:
        return not self.option("files")

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def initialize(self) -> None:
        if not self.serving:
            return
        from analytics.web.app import create_app
        from analytics.web.server import WebServer
        self.intake = Intake(self.intake_settings, reject=self.reject, clock=self.ctx.clock)
        store = self.ctx.store
        if store is None and self.http_table.get("serve_api", True):
            store = self._own_store = open_store(self.settings.store)
        if self.http_table.get("serve_api", True):
            from analytics.web.live import LiveFeed  # /api/v1/live follows this topology's day bolts
            self.live = LiveFeed(store, self.settings, zmq=self.ctx.zmq, endpoint=self.ctx.sender,
                                 name=f"_live.{self.name}")
        app = create_app(self.settings, store if self.http_table.get("serve_api", True) else None, self.intake,
                         live=self.live)
        self.server = WebServer(app, str(self.http_table.get("host", "127.0.0.1")),
                                int(self.http_table.get("port", 8600))).start()
        self.log.info("http intake listening on %s", self.server.url)
        self.ready.set()

    def next_tuple(self) -> bool:
        if not self.serving:
            return super().next_tuple()
        items = self.intake.drain(self.drain_per_call)
        for a in items:
            self.emit(a.topic, a.body, id=a.id, ts=a.body["ts"], raw=a.raw)
        if items and self.disk_log is not None:
            self.disk_log.flush()
        return True

    def handle(self, raw: bytes, now: float) -> None:
        """Replay of a disk-log line: the same validation and id as when it came over HTTP."""
        a: Accepted = validate(parse_object(raw), now, self.intake_settings.limits)
        self.emit(a.topic, a.body, id=a.id, ts=a.body["ts"], raw=raw)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        if self.intake is not None:
            out["http"] = {"queued": self.intake.queue.qsize(), "accepted": dict(self.intake.accepted),
                           "busy": self.intake.busy}
        return out

    def close(self) -> None:
        if self.live is not None:
            self.live.close()  # ends the open event streams, so the server stops at once
        if self.server is not None:
            self.server.stop(timeout=2)  # stop taking requests, then emit what is queued
            for a in self.intake.drain(self.intake.queue.qsize()):
                self.emit(a.topic, a.body, id=a.id, ts=a.body["ts"], raw=a.raw)
        if self._own_store is not None:
            self._own_store.close()
        super().close()
