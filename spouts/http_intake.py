"""The HTTP intake spout: events POSTed (or sent by a GIF beacon) to a gevent WSGI server.

initialize() starts the server on [http] host/port (default 127.0.0.1:8600;
port 0 picks a free one, see `port`) serving analytics.web's falcon app with the
intake's routes, plus the stats API and dashboard when the spout has a store.

Exactly once from the client's 200 on: handlers validate events and append
their canonical JSON to the intake log, data/http_YYYYMMDDHHMM.txt, answering
200 only once it is flushed (group commit over `commit_ms`; `fsync = true`
in [sources.http] to survive a power cut, not just a process crash). The spout
follows that log like any file, with checkpointed positions (a restart resumes
from what every bolt has stored), and emits each event on "gamelog.<code>" with
the gamelog spout's body {game, area, plat, uid, ts, code, data}, id =
record_id of the canonical JSON. A log that cannot be written, or a spout more
than `queue_size` events behind, answers 503 + Retry-After.

Replaying its disk log: the same spout with `files=[...]` reads the lines
instead of serving HTTP (validation and ids are the same).
"""
from __future__ import annotations

from typing import Any

import gevent.event

from analytics.component import Context
from analytics.disklog import DiskLog, GroupCommitLog
from analytics.sources import FileFollower, Reader
from analytics.store import open_store
from analytics.web.events import Accepted, validate
from analytics.web.intake import Intake, IntakeSettings, intake_routes
from spouts.base import SourceSpout, parse_object
from spouts.gamelog import GAMELOG_CODES

__all__ = ["HttpIntakeSpout"]


class HttpIntakeSpout(SourceSpout):
    name = "http"
    source = "http"
    emits = tuple(f"gamelog.{code}" for code in GAMELOG_CODES)

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        self.http_table: dict[str, Any] = dict(ctx.settings.extra.get("http", {}))
        super().__init__(ctx, name, **options)
        self.intake_settings = IntakeSettings.from_table(self.http_table)
        self.intake: Intake | None = None
        self.intake_log: GroupCommitLog | None = None
        if self.serving:
            # The intake log is this spout's disk log: written by the handlers, read by the reader.
            self.disk_log = None
        self.server: Any = None
        self._own_store: Any = None
        self.live: Any = None
        #: Set once the server listens (tests and the bench wait on it).
        self.ready = gevent.event.Event()
        #: Events read from the intake log per next_tuple call ([http] drain_per_call).
        self.chunk_records = int(self.http_table.get("drain_per_call", self.chunk_records))

    def _make_reader(self) -> Reader:
        if self.option("files"):
            return super()._make_reader()
        resume = bool(self.option("resume", True))
        return FileFollower([str(self.settings.data_path(f"{self.name}_*.txt"))], self.state if resume else None,
                            follow=True, max_line_bytes=self.max_line_bytes, resume=resume,
                            rescan_seconds=float(self.option("rescan_seconds", 1.0)),
                            rotate_grace=float(self.option("rotate_grace", 1.0)))

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
        self.intake_log = GroupCommitLog(
            DiskLog(self.settings.data_dir, self.name, rotate_seconds=int(self.option("rotate_seconds", 3600)),
                    max_bytes=int(self.option("rotate_bytes", 256 * 1024 * 1024)),
                    fsync=bool(self.option("fsync", False)), clock=self.ctx.clock),
            commit_ms=self.intake_settings.commit_ms)
        self.intake = Intake(self.intake_settings, log=self.intake_log.append, reject=self.reject,
                             clock=self.ctx.clock)
        store = self.ctx.store
        if store is None and self.http_table.get("serve_api", True):
            store = self._own_store = open_store(self.settings.store)
        if self.http_table.get("serve_api", True):
            from analytics.web.live import LiveFeed  # /api/v1/live follows this topology's day bolts
            self.live = LiveFeed(store, self.settings, zmq=self.ctx.zmq, endpoint=self.ctx.sender,
                                 name=f"_live.{self.name}")
        app = create_app(self.settings, store if self.http_table.get("serve_api", True) else None,
                         routes=intake_routes(self.intake, self.settings), live=self.live)
        self.server = WebServer(app, str(self.http_table.get("host", "127.0.0.1")),
                                int(self.http_table.get("port", 8600))).start()
        self.log.info("http intake listening on %s", self.server.url)
        self.ready.set()

    def _handle_one(self, raw: bytes, now: float) -> None:
        if self.intake is not None:
            self.intake.consumed += 1
        super()._handle_one(raw, now)

    def handle(self, raw: bytes, now: float) -> None:
        """Replay of a disk-log line: the same validation and id as when it came over HTTP."""
        a: Accepted = validate(parse_object(raw), now, self.intake_settings.limits)
        self.emit(a.topic, a.body, id=a.id, ts=a.body["ts"], raw=raw)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        if self.intake is not None:
            out["http"] = {"queued": self.intake.backlog, "accepted": dict(self.intake.accepted),
                           "busy": self.intake.busy}
        return out

    def close(self) -> None:
        if self.live is not None:
            self.live.close()  # ends the open event streams, so the server stops at once
        if self.server is not None:
            self.server.stop(timeout=2)  # stop taking requests, then emit what the log still holds
            self.intake_log.close()
            for _ in range(10_000):
                items = self.reader.read(self.chunk_records)
                if not items:
                    break
                now = self.ctx.clock()
                for raw in items:
                    self._handle_one(raw, now)
        if self._own_store is not None:
            self._own_store.close()
        super().close()
