"""Spout and Bolt base classes, in the streamparse style.

A component is one class in one file: wiring and tunables are class attributes,
behaviour is a few hooks, and the run loop lives here. Subclasses never touch
sockets, codecs or the store's retry logic.

    class LoginHourBolt(Bolt):
        topics = ["gamelog.login_logcount"]
        emits = ["login.hour"]
        def process(self, tup): ...          # update in-memory aggregates
        def flush(self, batch): ...          # turn them into one store Batch

Guarantees the base classes give:
* A hook that raises is logged with its traceback, counted and dead-lettered;
  the component keeps running.
* Bolts: `emit` is buffered and published only after the flush that produced it
  is stored, so downstream never sees state that is not durable.
* Bolts with `dedupe = True`: a tuple whose id this bolt already counted is
  dropped before `process` (ids are marked seen in the same atomic store write).
* A store outage is retried with backoff while the bolt stops reading, so the
  broker and then the spouts are slowed down; nothing is dropped.
* End of stream: a spout that ends sends a barrier on each topic it emits; a
  bolt that has barriers from every producer it expects flushes, runs its timer,
  forwards the barrier on its own topics and reports "drained" with its counters.
"""
from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import gevent
import gevent.event
import zmq.green as zmq

from analytics.checkpoint import BarrierAligner, Link, Origin, SpoutCheckpoints
from analytics.codec import CodecError, decode_batch, decode_obj
from analytics.config import Settings
from analytics.deadletter import DeadLetters
from analytics.disklog import DiskLog
from analytics.store.base import Batch, Store, StoreError, StoreUnavailable
from analytics.transport import (BARRIER, CHECKPOINT, CTL_TOPIC, DATA, REPORT, Inbox, Message, Publisher,
                                 SharedSubscriber, Subscriber)
from analytics.tuples import Tuple, partition_of

__all__ = ["Component", "Spout", "Bolt", "Context", "Counters"]

#: What Bolt._with_store returns when it stopped retrying an outage (the bolt is stopping).
_GAVE_UP = object()


def _batch_record(batch: Batch) -> dict[str, Any]:
    """A dead letter's view of a whole batch: every write, in a form that can be read and re-applied."""
    return {"upserts": [[u.collection, u.key, {"$inc": u.inc, "$set": u.set, "$setOnInsert": u.set_on_insert,
                                                "$max": u.max, "$min": u.min}] for u in batch.upserts],
            "members": [[[m.key.set, m.key.game, m.key.area, m.key.plat, m.key.ts, m.key.sub],
                         sorted(map(str, m.members))] for m in batch.members],
            "seen": batch.seen}


@dataclass
class Counters:
    """What a component did: the figures `analytics status` and the transfer check read."""
    received: dict[str, int] = field(default_factory=dict)
    emitted: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    deduplicated: int = 0
    ignored: int = 0
    #: Spouts: accepted records that travel inside another record's tuple (a packed tuple
    #: of k records adds k - 1), so records accepted = tuples sent + combined.
    combined: int = 0
    errors: int = 0
    flushes: int = 0
    lost: int = 0
    store_retries: int = 0
    #: Spouts: times the source was read again from its last committed position.
    rewinds: int = 0
    #: Bolts: checkpoint barriers that came out of sequence (tuples lost on the way).
    gaps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"received": dict(self.received), "emitted": dict(self.emitted), "rejected": self.rejected,
                "deduplicated": self.deduplicated, "ignored": self.ignored, "combined": self.combined,
                "errors": self.errors,
                "flushes": self.flushes, "lost": self.lost, "store_retries": self.store_retries,
                "rewinds": self.rewinds, "gaps": self.gaps}


@dataclass
class Context:
    """What the runner hands a component: settings, transport, store, clock."""
    settings: Settings
    zmq: zmq.Context
    receiver: str
    sender: str
    store: Store | None = None
    clock: Callable[[], float] = time.time
    #: Partitions this instance owns (None: all of them).
    partitions: set[int] | None = None
    #: (producer, topic) pairs whose barriers a bolt waits for before it drains.
    expected_barriers: frozenset[tuple[str, str]] = frozenset()
    #: Spouts: write raw records to the disk log (off when replaying a disk log).
    disk_log: bool = True
    #: Bolts: the process's shared subscription (each frame received and decoded once for
    #: every local bolt); None: a socket of the bolt's own.
    subscriptions: SharedSubscriber | None = None
    #: Spouts: the bolts downstream that must store an epoch before its position is committed
    #: (None: no checkpoints, positions are saved as records are read).
    ackers: frozenset[str] | None = frozenset()
    #: Bolts: spout -> the links (producer, topic) into this bolt that carry its tuples.
    origin_links: dict[str, frozenset[Link]] = field(default_factory=dict)


class Component:
    """What spouts and bolts share: name, options, counters, dead letters, emit."""

    #: Component name; defaults to the class name in lower case.
    name: ClassVar[str] = ""
    #: 'spout' or 'bolt' (what `analytics status` shows).
    role: ClassVar[str] = "component"
    #: Topics this component publishes.
    emits: ClassVar[Sequence[str]] = ()

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.name = name or type(self).name or type(self).__name__.lower()
        self.options: dict[str, Any] = {**self.settings.component(self.name), **options}
        self.counters = Counters()
        self.dead_letters = DeadLetters(self.settings.data_path("deadletter"), self.name)
        self.log = logging.getLogger(f"analytics.{self.role}.{self.name}")
        self.health: dict[str, str] = {"state": "ok", "reason": ""}
        self.publisher: Publisher | None = None
        self._stopping = gevent.event.Event()
        self.finished = gevent.event.Event()

    # -- hooks -----------------------------------------------------------------------
    def initialize(self) -> None:
        """Called once in the component's own process/greenlet before the loop."""

    def close(self) -> None:
        """Called once after the loop, after the final flush."""

    # -- helpers for subclasses --------------------------------------------------------
    def option(self, key: str, default: Any = None) -> Any:
        """A per-component option: [components.<name>] in the config, or a constructor kwarg."""
        return self.options.get(key, default)

    def reject(self, raw: Any, reason: str) -> None:
        """Dead-letter one bad input with the reason, and count it."""
        self.counters.rejected += 1
        self.dead_letters.write(raw, reason)

    def _send(self, topic: str, body: dict[str, Any], id: str, ts: int) -> None:
        partitions = self.settings.partitions
        partition = 0 if partitions == 1 else partition_of(str(body.get("game", "")), str(body.get("area", "")),
                                                           partitions)
        self.publisher.send(topic, id, ts, body, partition)
        self.counters.emitted[topic] = self.counters.emitted.get(topic, 0) + 1

    def _safely(self, hook: Callable[..., Any], *args: Any, raw: Any = None) -> bool:
        """Run a hook; on error log it, count it and dead-letter `raw`. True if it succeeded."""
        try:
            hook(*args)
            return True
        except Exception as exc:  # a bad record or a bug must not stop the component
            self._failed(hook, exc, raw if raw is not None else repr(args)[:2000])
            return False

    def _failed(self, hook: Callable[..., Any], exc: Exception, raw: Any) -> None:
        """Log, count and dead-letter a hook's failure (called from inside the except block)."""
        name = getattr(hook, "__name__", hook)
        self.counters.errors += 1
        self.log.exception("%s failed in %s", self.name, name)
        self.dead_letters.write(raw, f"error: {type(exc).__name__}: {exc} in {name}; "
                                + traceback.format_exc(limit=3).replace("\n", " | "))

    def stop(self) -> None:
        """Ask the loop to finish (it flushes what it holds first)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stats(self) -> dict[str, Any]:
        """Health and counters, as reported to etcd and `analytics status`."""
        return {"health": dict(self.health), "counters": self.counters.as_dict()}

    def _publisher(self, before_send: Callable[[], None] | None = None, immediate: bool = False) -> Publisher:
        b = self.settings.broker
        return Publisher(self.ctx.zmq, self.ctx.receiver, self.name, batch_size=b.batch_size,
                         linger_ms=b.linger_ms, hwm=b.hwm, before_send=before_send, immediate=immediate)

    def _barrier_info(self) -> dict[str, Any]:
        return {"component": self.name}

    def run(self) -> None:
        raise NotImplementedError


class Spout(Component):
    """A data source. Override `next_tuple`; call `self.emit(...)` from it."""

    role = "spout"
    #: Kind of records ('gamelog', 'payment', ...); '' = no disk log. Raw records go to
    #: data/<component name>_YYYYMMDDHHMM.txt: the name is the source unless several
    #: spouts of one source run (e.g. gamelog_wsdx), whose logs must stay apart.
    source: ClassVar[str] = ""
    #: Seconds to wait when next_tuple() found nothing (it must never block long).
    idle_sleep: ClassVar[float] = 0.05
    #: Open a checkpoint epoch this often (seconds): its source position is committed once every
    #: bolt downstream has stored what was read before it (analytics/checkpoint.py).
    checkpoint_seconds: ClassVar[float] = 1.0
    #: An epoch not stored downstream within this many seconds makes the spout read again from
    #: its last committed position (a bolt or the broker died and lost what it held).
    checkpoint_timeout: ClassVar[float] = 30.0
    #: On a clean stop, wait this long for the last epoch to be stored before exiting.
    checkpoint_stop_wait: ClassVar[float] = 5.0

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.disk_log: DiskLog | None = None
        if self.source and ctx.disk_log:
            self.disk_log = DiskLog(self.settings.data_dir, self.name,
                                    rotate_seconds=int(self.option("rotate_seconds", 3600)),
                                    max_bytes=int(self.option("rotate_bytes", 256 * 1024 * 1024)),
                                    fsync=bool(self.option("fsync", False)), clock=ctx.clock)
        self.checkpoints: SpoutCheckpoints | None = None
        self._acks: Subscriber | None = None

    def next_tuple(self) -> bool:
        """Emit zero or more tuples. Return False when a finite source is exhausted."""
        raise NotImplementedError

    # -- checkpoint hooks (a spout whose source can be read again implements them) ---------
    def position(self) -> Any:
        """Where the source is now, after everything emitted so far; None: no checkpoints
        (stdin, a replay of files that saves no offsets)."""
        return None

    def commit_position(self, position: Any) -> None:
        """Everything read before `position` is stored downstream: save it (a restart resumes there)."""

    def rewind_to(self, position: Any) -> None:
        """Read again from `position` (the last committed one): something downstream lost tuples."""

    def emit(self, topic: str, body: dict[str, Any], *, id: str, ts: int, raw: bytes | str | None = None) -> None:
        """Publish one tuple; its raw record goes to the disk log first (written before any send)."""
        if raw is not None and self.disk_log is not None:
            self.disk_log.append(raw)
        self._send(topic, body, id, ts)

    def run(self) -> None:
        """The spout loop: next_tuple until exhausted or stopped, then end-of-stream barriers."""
        self.publisher = self._publisher(self.disk_log.flush if self.disk_log else None)
        try:
            if not self._safely(self.initialize):
                self.health = {"state": "failing", "reason": "initialize failed"}
                return
            self._start_checkpoints()
            calls = 0
            self.started_at = self.ctx.clock()
            every = float(self.option("checkpoint_seconds", type(self).checkpoint_seconds))
            clock = time.monotonic
            next_checkpoint = clock() + every
            while not self.stopping:
                emitted_before = sum(self.counters.emitted.values())
                more = True
                try:
                    more = self.next_tuple()
                except Exception as exc:
                    self.counters.errors += 1
                    self.log.exception("next_tuple failed")
                    self.dead_letters.write("", f"error: {type(exc).__name__}: {exc} in next_tuple")
                    gevent.sleep(self.idle_sleep)
                self.publisher.maybe_flush()
                if self.checkpoints is not None:
                    now = clock()
                    if now >= next_checkpoint:
                        next_checkpoint = now + every
                        self._checkpoint(now)
                if more is False:
                    break
                calls += 1
                if sum(self.counters.emitted.values()) == emitted_before:
                    gevent.sleep(self.idle_sleep)  # idle: let the hub and other greenlets run
                elif calls % 64 == 0:
                    gevent.sleep(0)
            self._safely(self.close)
            if self.disk_log is not None:
                self.disk_log.flush()
            if self.checkpoints is not None:
                self._last_checkpoint()
            self.publisher.barrier(self.emits, self._barrier_info())
            self.publisher.report({"event": "eos", "component": self.name, "role": self.role,
                                   "started_at": self.started_at, "at": self.ctx.clock(),
                                   "sent": dict(self.publisher.sent), **self.counters.as_dict()})
            self.log.info("%s finished: emitted %s, rejected %d", self.name, self.counters.emitted,
                          self.counters.rejected)
        finally:
            if self.disk_log is not None:
                self.disk_log.close()
            if self._acks is not None:
                self._acks.close()
            self.dead_letters.close()
            self.publisher.close()
            self.finished.set()

    # -- checkpoints -------------------------------------------------------------------
    def _start_checkpoints(self) -> None:
        """Checkpoints are on when the source can tell its position (files, HTTP cursors)."""
        start = self.position()
        if start is None or self.ctx.ackers is None:
            return
        timeout = float(self.option("checkpoint_timeout", type(self).checkpoint_timeout))
        self.checkpoints = SpoutCheckpoints(self.name, self.ctx.ackers, start, timeout=timeout)
        self._acks = Subscriber(self.ctx.zmq, self.ctx.sender, f"_acks.{self.name}", [CTL_TOPIC],
                                hwm=self.settings.broker.hwm)
        self.log.info("%s: checkpoints every %ss, committed once stored by %d bolt(s)", self.name,
                      self.option("checkpoint_seconds", type(self).checkpoint_seconds), len(self.ctx.ackers))

    def _checkpoint(self, now: float) -> None:
        """Take acks, commit what every bolt downstream stored, rewind on a gap, open the next epoch."""
        cp = self.checkpoints
        self._read_acks()
        done = cp.to_commit(now)
        if done is not None:
            self._safely(self.commit_position, done)
        why = cp.overdue(now)
        if why:
            self.log.warning("%s: %s; reading again from the last committed position", self.name, why)
            self.counters.rewinds += 1
            self.publisher.flush()
            origin = cp.rewind()
            self.publisher.checkpoint(self.emits, [list(origin)])
            self._safely(self.rewind_to, cp.committed)
            return
        if self.disk_log is not None:
            self.disk_log.flush()
        origin = cp.begin(self.position(), now)
        self.publisher.checkpoint(self.emits, [list(origin)])

    def _read_acks(self) -> None:
        cp = self.checkpoints
        while True:
            msg = self._acks.recv_nowait() if self._acks is not None else None
            if msg is None:
                return
            if msg.kind != REPORT:
                continue
            try:
                info = decode_obj(msg.payload)
            except CodecError:
                continue
            event = info.get("event")
            if event not in ("ack", "nack"):
                continue
            for origin in info.get("origins", ()):
                if not (isinstance(origin, list) and len(origin) == 3 and origin[0] == self.name):
                    continue
                if event == "ack":
                    cp.ack(str(info.get("bolt", "")), str(origin[1]), int(origin[2]))
                else:
                    cp.nack(str(origin[1]), f"{info.get('bolt')} reported a gap: {info.get('reason', '')}")

    def _last_checkpoint(self) -> None:
        """On a clean stop: one last epoch, and a short wait for it to be stored and committed."""
        cp = self.checkpoints
        self.publisher.flush()
        now = time.monotonic()
        cp.begin(self.position(), now)
        self.publisher.checkpoint(self.emits, [[cp.spout, cp.gen, cp.n]])
        deadline = now + float(self.option("checkpoint_stop_wait", type(self).checkpoint_stop_wait))
        while cp.open and time.monotonic() < deadline and not cp.failed:
            gevent.sleep(0.02)
            self._read_acks()
            done = cp.to_commit(time.monotonic())
            if done is not None:
                self._safely(self.commit_position, done)
        if cp.open:
            self.log.info("%s: stopping with %d epoch(s) not yet stored downstream; they are read again "
                          "at the next start", self.name, len(cp.open))

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        cp = self.checkpoints
        if cp is not None:
            out["checkpoints"] = {"committed": cp.commits, "open": len(cp.open), "rewinds": cp.rewinds,
                                  "last_commit_age": round(cp.last_commit_age, 3)}
        return out


class Bolt(Component):
    """A processing node. Override `process` and `flush` (and `tick` for timers)."""

    role = "bolt"
    #: Topics subscribed: exact names ('gamelog.login_logcount') or prefixes ('gamelog.*').
    topics: ClassVar[Sequence[str]] = ()
    #: Flush after this many tuples...
    flush_every: ClassVar[int] = 5000
    #: ...or after this many seconds, whichever comes first.
    flush_seconds: ClassVar[float] = 1.0
    #: Call tick() every this many seconds (timer bolts); None for event-only bolts.
    tick_seconds: ClassVar[float | None] = None
    #: The first tick after this many seconds (None: after tick_seconds).
    first_tick_seconds: ClassVar[float | None] = None
    #: Drop tuples whose id this bolt has already counted (needed for sums, not for distinct counts).
    dedupe: ClassVar[bool] = False

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.flush_every = int(self.option("flush_every", type(self).flush_every))
        self.flush_seconds = float(self.option("flush_seconds", type(self).flush_seconds))
        tick = self.option("tick_seconds", type(self).tick_seconds)
        self.tick_seconds = None if tick is None else float(tick)
        #: Largest event timestamp seen: the event-time clock timers can follow.
        self.watermark = 0
        self._outbox: list[tuple[str, dict[str, Any], str, int]] = []
        self._buffer: list[Tuple] = []
        self._pending = 0
        self._from: dict[tuple[str, str], dict[str, int]] = {}
        self._barriers: dict[tuple[str, str], dict[str, Any]] = {}
        self.aligner = BarrierAligner(ctx.origin_links)
        self.drained = gevent.event.Event()
        self.subscriber: Subscriber | Inbox | None = None

    @property
    def store(self) -> Store:
        if self.ctx.store is None:
            raise StoreError(f"bolt {self.name} has no store")
        return self.ctx.store

    # -- hooks -----------------------------------------------------------------------
    def process(self, tup: Tuple) -> None:
        """Fold one tuple into in-memory state."""
        raise NotImplementedError

    def flush(self, batch: Batch) -> None:
        """Move in-memory state into `batch` (one atomic store write) and reset it."""

    def after_flush(self) -> None:
        """After the batch is stored: read back and emit derived state if needed."""

    def tick(self, now: float) -> None:
        """Timer bolts: recompute from the store. `now` is the wall clock (event time: self.watermark)."""

    def reset(self) -> None:
        """Forget in-memory memories of what was already emitted (not what is pending: that is
        still to be stored). Called when a source rewinds: it sends again what a bolt downstream
        may have lost, and this bolt must pass it on instead of skipping it as known."""

    def emit(self, topic: str, body: dict[str, Any], *, id: str, ts: int) -> None:
        """Queue a derived tuple; it is published after the current flush is stored."""
        self._outbox.append((topic, body, id, ts))

    # -- loop ------------------------------------------------------------------------
    def run(self) -> None:
        """The bolt loop: receive, process, flush by count or time, tick, drain on barriers."""
        self.publisher = self._publisher()
        if self.ctx.subscriptions is not None:
            self.subscriber = self.ctx.subscriptions.subscribe(self.name, self.topics, partitions=self.ctx.partitions)
        else:
            self.subscriber = Subscriber(self.ctx.zmq, self.ctx.sender, self.name, self.topics,
                                         partitions=self.ctx.partitions, hwm=self.settings.broker.hwm)
            self.subscriber.on_malformed = lambda frames, reason: self.reject(
                repr([bytes(f)[:256] for f in frames[:4]]), f"frame: {reason}")
        try:
            if not self._safely(self.initialize):
                self.health = {"state": "failing", "reason": "initialize failed"}
                return
            clock = time.monotonic
            last_flush = last_tick = clock()
            first = self.option("first_tick_seconds", type(self).first_tick_seconds)
            if self.tick_seconds is not None and first is not None:
                last_tick -= max(0.0, self.tick_seconds - float(first))
            while not self.stopping:
                msg = self.subscriber.recv(0.05)
                handled = 0
                while msg is not None:
                    self._handle(msg)
                    handled += 1
                    if self._pending >= self.flush_every or handled >= 64 or self.stopping:
                        break
                    msg = self.subscriber.recv_nowait()
                now = clock()
                if self._pending >= self.flush_every or (now - last_flush >= self.flush_seconds):
                    self._flush()
                    last_flush = now
                if self.tick_seconds is not None and now - last_tick >= self.tick_seconds:
                    self._tick()
                    last_tick = now
            self._flush()
            self._safely(self.close)
        finally:
            self.dead_letters.close()
            self.publisher.close()
            self.subscriber.close()
            self.finished.set()

    def set_partitions(self, partitions: set[int] | None) -> None:
        """Take over (or give up) partitions; flush first so nothing is held for a lost one."""
        self._flush()
        self.ctx.partitions = partitions
        if self.subscriber is not None:
            self.subscriber.set_partitions(partitions)

    def _handle(self, msg: Message) -> None:
        key = (msg.producer, msg.topic)
        if msg.kind == DATA:
            tuples = msg.decoded  # decoded once per process, shared by the bolts it reaches
            if tuples is None:
                try:
                    tuples = msg.decoded = decode_batch(msg.topic, msg.payload)
                except CodecError as exc:
                    self.reject(msg.payload, f"codec: {exc}")
                    return
            n = len(tuples)
            self.counters.received[msg.topic] = self.counters.received.get(msg.topic, 0) + n
            per_part = self._from.setdefault(key, {})
            per_part[msg.partition] = per_part.get(msg.partition, 0) + n
            self._barriers.pop(key, None)  # the producer is streaming again
            self._pending += n
            watermark = self.watermark
            if self.dedupe:
                self._buffer.extend(tuples)
                for t in tuples:
                    if type(t.ts) is int and t.ts > watermark:
                        watermark = t.ts
            else:
                process = self.process  # the hot loop: one pass, the hook called directly
                for t in tuples:
                    if type(t.ts) is int and t.ts > watermark:
                        watermark = t.ts
                    try:
                        process(t)
                    except Exception as exc:  # a bad record or a bug must not stop the bolt
                        self._failed(process, exc, t.body)
            self.watermark = watermark
        elif msg.kind == CHECKPOINT:
            try:
                info = decode_obj(msg.payload)
                inc, seq = str(info["inc"]), int(info["seq"])
                parts = info.get("partitions") or {}
                owned = self.ctx.partitions
                sent = sum(int(n) for p, n in parts.items() if owned is None or int(p) in owned)
                origins = list(info.get("origins") or [])
            except (CodecError, KeyError, TypeError, ValueError, AttributeError) as exc:
                self.reject(msg.payload, f"codec: bad checkpoint barrier from {msg.producer}: {exc}")
                return
            self._on_checkpoint(key, inc, seq, sent, origins)
        elif msg.kind == BARRIER:
            try:
                info = decode_obj(msg.payload)
            except CodecError as exc:
                self.reject(msg.payload, f"codec: {exc}")
                return
            self._on_barrier(key, info)
        else:
            self.reject(msg.payload, f"codec: unexpected message kind {msg.kind!r} from {msg.producer}")

    def _on_checkpoint(self, link: Link, inc: str, seq: int, sent: int, origins: list[Any]) -> None:
        """A checkpoint barrier: check it is in sequence, align it per source, then store,
        forward and acknowledge the epochs that are complete (or report the gap)."""
        got = sum(self._from.get(link, {}).values())
        ok = self.aligner.in_sequence(link, inc, seq, sent, got)
        aligned, new_gens, nacks = self.aligner.on_barrier(link, origins, ok)
        if not ok:
            self.counters.gaps += 1
            reason = f"barrier {seq} of {link[0]} on {link[1]} out of sequence (tuples lost on the way)"
            self.log.warning("%s: %s", self.name, reason)
            if nacks:
                self.publisher.report({"event": "nack", "bolt": self.name, "reason": reason,
                                       "origins": [list(o) for o in nacks]})
        if new_gens:
            # A source rewound (or this bolt is new): what it sends again must not be skipped here
            # as already emitted, and the bolts downstream must hear of it before the tuples come.
            self._safely(self.reset)
            self.publisher.checkpoint(self.emits, [list(o) for o in new_gens])
        if aligned:
            if not self._flush():
                return   # not stored (stopping with the store out): not acknowledged, read again later
            self.publisher.checkpoint(self.emits, [list(o) for o in aligned])
            self.publisher.report({"event": "ack", "bolt": self.name, "origins": [list(o) for o in aligned]})

    def _on_barrier(self, key: tuple[str, str], info: dict[str, Any]) -> None:
        sent_parts: dict[str, int] = info.get("partitions", {})
        owned = self.ctx.partitions
        expected = sum(n for p, n in sent_parts.items() if owned is None or int(p) in owned) \
            if sent_parts else info.get("sent", 0)
        got = sum(self._from.get(key, {}).values())
        if got < expected:
            self.counters.lost += expected - got
            self.log.error("%s: %d tuples of %s on %s sent but not received", self.name, expected - got, *key)
        self._barriers[key] = info
        if self.ctx.expected_barriers and self.ctx.expected_barriers <= self._barriers.keys():
            self._drain()

    def _drain(self) -> None:
        self._flush()
        if self.tick_seconds is not None:
            self._tick()
        self.publisher.barrier(self.emits, self._barrier_info())
        self.publisher.report({"event": "drained", "component": self.name, "role": self.role,
                               "at": self.ctx.clock(),
                               "received_from": {f"{p}|{t}": sum(v.values()) for (p, t), v in self._from.items()},
                               "sent": dict(self.publisher.sent), "store_ops": self._store_ops(),
                               **self.counters.as_dict()})
        self.publisher.flush()
        self._barriers.clear()
        self.drained.set()
        self.log.info("%s drained: received %s", self.name, self.counters.received)

    def _store_ops(self) -> dict[str, Any] | None:
        """The store's operation counters so far, tagged with the store's identity.

        Bolts of one process share a store, so a run's total takes each store once
        (DrainReport.store_ops), whichever bolt reported it last.
        """
        counts = getattr(self.ctx.store, "op_counts", None)
        if counts is None:
            return None
        return {"store": f"{os.getpid()}:{id(self.ctx.store):x}", **{k: int(v) for k, v in dict(counts).items()}}

    def _tick(self) -> None:
        self._safely(self.tick, self.ctx.clock())
        self._flush()

    def _flush(self) -> bool:
        """Store what the bolt holds as one atomic batch, then publish what it derived.

        True once stored (or dead-lettered whole, when the store rejects it for good);
        False only when stopping with the store still out: nothing is acknowledged
        then, so the sources read it again at the next start.
        """
        fresh: list[str] = []
        if self._buffer:
            buffer, self._buffer = self._buffer, []
            ids = list(dict.fromkeys(t.id for t in buffer))
            try:
                unseen = self._with_store(self.store.unseen, self.name, ids)
            except StoreError as exc:
                self._store_rejected(exc, "looking up seen ids",
                                     {"tuples": [[t.topic, t.id, t.ts, t.body] for t in buffer]})
                buffer, unseen = [], set()
            if unseen is _GAVE_UP:
                self._buffer = buffer + self._buffer  # kept; not acknowledged
                return False
            for t in buffer:
                if t.id in unseen:
                    unseen.discard(t.id)
                    fresh.append(t.id)
                    self._safely(self.process, t, raw=t.body)
                else:
                    self.counters.deduplicated += 1
        batch = Batch()
        if not self._safely(self.flush, batch):
            batch = Batch()
        if fresh:
            batch.mark_seen(self.name, fresh)
        if batch:
            try:
                if self._with_store(self.store.apply, batch) is _GAVE_UP:
                    return False
            except StoreError as exc:
                self._store_rejected(exc, "applying a batch", _batch_record(batch))
        self._pending = 0
        self.counters.flushes += 1
        self._publish_outbox()
        if self._safely(self.after_flush):
            self._publish_outbox()
        self.publisher.flush()
        return True

    def _store_rejected(self, exc: StoreError, doing: str, record: Any) -> None:
        """The store refused for good (not an outage): dead-letter the whole batch, count it, go on."""
        self.counters.errors += 1
        self.log.error("%s: store rejected %s: %s; dead-lettered whole", self.name, doing, exc)
        self.dead_letters.write(record, f"store: {doing}: {exc}")

    def _publish_outbox(self) -> None:
        outbox, self._outbox = self._outbox, []
        for topic, body, id, ts in outbox:
            self._send(topic, body, id, ts)

    def _with_store(self, call: Callable[..., Any], *args: Any) -> Any:
        """Call the store, retrying an outage with backoff (the loop does not read meanwhile).

        Returns the call's result, or _GAVE_UP when the bolt is stopping and the store is
        still out after `store_stop_timeout` seconds (nothing is acknowledged then: the
        sources read it again at the next start). A StoreError that is not an outage (a
        rejected write, a damaged file) is raised to the caller, which dead-letters the batch.
        """
        delay, waited = 0.05, 0.0
        stop_timeout = float(self.option("store_stop_timeout", 10.0))
        while True:
            try:
                result = call(*args)
                if self.health["state"] != "ok":
                    self.log.warning("%s: store is back after %.1fs", self.name, waited)
                    self.health = {"state": "ok", "reason": ""}
                return result
            except StoreUnavailable as exc:
                self.counters.store_retries += 1
                if self.health["state"] == "ok":
                    self.log.warning("%s: store unavailable (%s); retrying, not reading meanwhile", self.name, exc)
                self.health = {"state": "degraded", "reason": f"store unavailable: {exc}"}
                if self.stopping and waited >= stop_timeout:
                    self.log.error("%s: stopping with the store still unavailable; %d tuples since the last "
                                   "stored checkpoint are read again at the next start", self.name, self._pending)
                    return _GAVE_UP
                gevent.sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)
