"""Live push of today's figures: Server-Sent Events fed by the day bolts' flushes.

    GET /api/v1/live?game=&area=&plat=     text/event-stream of `today` events

The day bolts publish a state tuple (`login.day`, `signup.day`, `createrole.day`,
`payorderuser.day`) right after each flush is stored. LiveFeed subscribes to those
topics at the broker like any bolt, and only marks the games they name; a pusher
greenlet then re-reads today's figures of every open selection of those games
(at most every `min_interval`, which coalesces a burst of flushes) and hands each
SSE client the new snapshot when it changed. A snapshot supersedes the one
before, so a slow client gets the latest one, never a backlog, and the reader
never holds the broker. Every `refresh_seconds` the open selections are re-read
anyway: without a reachable broker (`analytics serve` with no topology) the
stream still moves, and the page falls back to polling /api/v1/today when the
stream itself fails.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

import falcon
import gevent
import gevent.event
import orjson

from analytics.config import Settings
from analytics.store.base import Store
from analytics.web.reports import Selection, selection_of, today_snapshot

__all__ = ["LiveFeed", "LiveClient", "LiveResource", "TOPICS", "sse_event"]

log = logging.getLogger(__name__)

#: State topics published after a day bolt's flush is stored: today's figures may have changed.
TOPICS = ("login.day", "signup.day", "createrole.day", "payorderuser.day")
_LIVE_PARAMS = {"game", "area", "plat"}


def sse_event(event: str, data: dict[str, Any], id: int | None = None) -> bytes:
    """One Server-Sent Event (JSON data on one line)."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def _key(sel: Selection) -> tuple:
    return (sel.game, tuple(sel.areas), tuple(sel.plats))


class LiveClient:
    """One open stream: the latest snapshot not yet sent, and an event that says there is one."""

    def __init__(self, sel: Selection) -> None:
        self.selection = sel
        self.key = _key(sel)
        self.latest: dict[str, Any] | None = None
        self.ready = gevent.event.Event()
        self.closed = False

    def offer(self, snapshot: dict[str, Any]) -> None:
        self.latest = snapshot   # replaces an unsent one: only the newest figures matter
        self.ready.set()

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next snapshot, or None after `timeout` seconds (or when the feed closes)."""
        if not self.ready.wait(timeout) or self.closed:
            return None
        self.ready.clear()
        snap, self.latest = self.latest, None
        return snap


class LiveFeed:
    """Today's figures pushed to SSE clients when a flush reports a change (see the module docstring)."""

    #: Shortest time between two re-reads of the same game's selections (seconds).
    min_interval: float = 0.1
    #: Re-read every open selection this often even without a state tuple (seconds).
    refresh_seconds: float = 5.0
    #: SSE comment sent when nothing was pushed for this long (seconds): proxies keep the stream open.
    keepalive_seconds: float = 15.0

    def __init__(self, store: Store, settings: Settings, *, zmq: Any = None, endpoint: str | None = None,
                 name: str = "_live", clock: Callable[[], float] = time.time) -> None:
        """`zmq`/`endpoint`: the broker's sender to subscribe at (None: no feed, refresh only)."""
        self.store, self.settings, self.clock = store, settings, clock
        self.zmq, self.endpoint, self.name = zmq, endpoint, name
        self.clients: dict[tuple, set[LiveClient]] = {}
        self.last: dict[tuple, dict[str, Any]] = {}
        self.dirty: set[str] = set()
        #: State tuples read, snapshots computed, and pushes (for tests and the benchmark).
        self.notified = self.computed = self.pushed = 0
        self.seq = 0
        self._wake = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> "LiveFeed":
        """Start the pusher and, with an endpoint, the broker reader. Idempotent."""
        if not self._greenlets and not self._closed:
            self._greenlets.append(gevent.spawn(self._push_loop))
            if self.endpoint:
                self._greenlets.append(gevent.spawn(self._read_loop))
        return self

    def close(self) -> None:
        """End every open stream and stop the greenlets (the broker socket is closed)."""
        self._closed = True
        for group in self.clients.values():
            for c in group:
                c.closed = True
                c.ready.set()
        self._wake.set()
        gevent.killall(self._greenlets, timeout=2)
        self._greenlets = []

    # -- clients ---------------------------------------------------------------------
    def subscribe(self, sel: Selection) -> LiveClient:
        """A client of `sel`, holding today's figures at once (400 if the selection is bad)."""
        self.start()
        client = LiveClient(sel)
        snap = self._snapshot(sel)
        self.clients.setdefault(client.key, set()).add(client)
        self.last.setdefault(client.key, snap)
        client.offer(snap)
        return client

    def unsubscribe(self, client: LiveClient) -> None:
        group = self.clients.get(client.key)
        if group is not None:
            group.discard(client)
            if not group:
                del self.clients[client.key]
                self.last.pop(client.key, None)

    def stream(self, client: LiveClient) -> Iterator[bytes]:
        """The SSE body: a retry hint, then one `today` event per snapshot, keep-alive comments between."""
        try:
            yield b"retry: 2000\n\n"
            while not self._closed:
                snap = client.next(self.keepalive_seconds)
                if snap is None:
                    if self._closed:
                        break
                    yield b": keepalive\n\n"
                    continue
                yield sse_event("today", snap, snap.get("seq"))
        finally:
            self.unsubscribe(client)

    # -- change notices ----------------------------------------------------------------
    def changed(self, game: str) -> None:
        """A figure of `game` may have changed (a flush was stored): re-read its open selections soon."""
        self.notified += 1
        self.dirty.add(game)
        self._wake.set()

    def _snapshot(self, sel: Selection) -> dict[str, Any]:
        self.computed += 1
        self.seq += 1
        return {**today_snapshot(self.store, sel, self.clock()), "seq": self.seq}

    def refresh(self, games: set[str] | None = None) -> int:
        """Re-read the open selections of `games` (None: all); push the ones that changed. Returns pushes."""
        pushed = 0
        for key, group in list(self.clients.items()):
            if not group or (games is not None and key[0] not in games):
                continue
            snap = self._snapshot(next(iter(group)).selection)
            before = self.last.get(key)
            if before is not None and _same(before, snap):
                continue
            self.last[key] = snap
            for c in list(group):
                c.offer(snap)
            pushed += 1
        self.pushed += pushed
        return pushed

    def _push_loop(self) -> None:
        last_refresh = time.monotonic()
        while not self._closed:
            self._wake.wait(self.refresh_seconds)
            self._wake.clear()
            if self._closed:
                return
            due = time.monotonic() - last_refresh >= self.refresh_seconds
            games, self.dirty = self.dirty, set()
            try:
                self.refresh(None if due else games)
            except Exception:  # a store outage must not end the feed; the next change retries
                log.exception("live: could not read today's figures")
                self.dirty |= games
            if due:
                last_refresh = time.monotonic()
            gevent.sleep(self.min_interval)

    def _read_loop(self) -> None:
        from analytics.codec import CodecError, decode_batch
        from analytics.transport import DATA, Subscriber, new_context
        ctx = self.zmq or new_context(self.settings)
        sub = Subscriber(ctx, self.endpoint, self.name, TOPICS)
        log.info("live: following %s on %s", ", ".join(TOPICS), self.endpoint)
        try:
            while not self._closed:
                msg = sub.recv(0.5)
                while msg is not None:  # read everything waiting: never hold the broker
                    if msg.kind == DATA:
                        try:
                            games = {str(t.body.get("game", "")) for t in decode_batch(msg.topic, msg.payload)
                                     if isinstance(t.body, dict)}
                        except CodecError as exc:
                            log.warning("live: undecodable %s frame: %s", msg.topic, exc)
                            games = set()
                        for game in games:
                            self.changed(game)
                    msg = sub.recv_nowait()
        finally:
            sub.close()
            if self.zmq is None:
                ctx.term()


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two snapshots show the same figures (the time and sequence number aside)."""
    return {k: v for k, v in a.items() if k not in ("at", "seq")} == \
        {k: v for k, v in b.items() if k not in ("at", "seq")}


class LiveResource:
    """GET /api/v1/live: today's figures of a selection as Server-Sent Events."""

    def __init__(self, live: LiveFeed, settings: Settings) -> None:
        self.live, self.settings = live, settings

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sel = selection_of(req, self.settings, _LIVE_PARAMS)
        client = self.live.subscribe(sel)
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")   # nginx: do not buffer the stream
        resp.stream = self.live.stream(client)
