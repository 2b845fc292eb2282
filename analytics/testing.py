"""A test harness for bolts: their real receive, flush and tick paths without sockets (as bytewax.testing).

    bolt = make_bolt(LoginDayBolt, settings, store)
    feed(bolt, tuples)          # what the loop does on receipt (dedupe bolts buffer until flush)
    sent = flush(bolt)          # the base class's flush: dedupe, flush(), apply, after_flush
    assert store.find("loginday") == [...]

`feed` hands the tuples to the bolt as the data messages its subscription would
deliver, so the dedupe branch, counters and dead letters are the runtime's own;
the publisher is a `RecordingPublisher` that keeps what the bolt emits.
"""
from __future__ import annotations

import time
from itertools import groupby
from typing import Any, Callable, Iterable, TypeVar

import gevent

from analytics.component import Bolt, Context
from analytics.config import Settings
from analytics.store.base import Store
from analytics.transport import DATA, Message
from analytics.tuples import Tuple

__all__ = ["RecordingPublisher", "Sent", "bolt_context", "make_bolt", "feed", "flush", "tick", "run", "wait_until"]

#: One emitted tuple as the publisher got it: (topic, id, ts, body).
Sent = tuple[str, str, int, dict[str, Any]]
B = TypeVar("B", bound=Bolt)


class RecordingPublisher:
    """Stands in for the transport publisher: keeps what is sent, barriers and reports included."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.barriers: list[tuple[Any, dict[str, Any]]] = []
        self.reports: list[dict[str, Any]] = []

    def send(self, topic: str, id: str, ts: int, body: dict[str, Any], partition: int) -> None:
        self.sent.append((topic, id, ts, body))

    def barrier(self, topics: Any, info: dict[str, Any]) -> None:
        self.barriers.append((topics, info))

    def report(self, info: dict[str, Any]) -> None:
        self.reports.append(info)

    def flush(self) -> None:
        pass

    def maybe_flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def bolt_context(settings: Settings, store: Store | None = None, *,
                    clock: Callable[[], float] | None = None) -> Context:
    """A context with no transport: the harness delivers and records instead."""
    ctx = Context(settings, zmq=None, receiver="inproc://testing", sender="inproc://testing", store=store)
    if clock is not None:
        ctx.clock = clock
    return ctx


def make_bolt(cls: type[B], settings: Settings, store: Store | None = None, *,
              clock: Callable[[], float] | None = None, **options: Any) -> B:
    """A bolt of `cls` over `store`, with a RecordingPublisher (`bolt.publisher.sent`)."""
    bolt = cls(bolt_context(settings, store, clock=clock), **options)
    bolt.publisher = RecordingPublisher()
    return bolt


def feed(bolt: Bolt, tuples: Iterable[Tuple], *, producer: str = "testing", partition: str = "000") -> None:
    """Deliver tuples as the bolt's subscription does: one data message per run of one topic, in order."""
    for topic, run_ in groupby(tuples, key=lambda t: t.topic):
        batch = list(run_)
        bolt._handle(Message(DATA, topic, partition, producer, len(batch), b"", batch))


def _recorded(bolt: Bolt, step: Callable[[], None]) -> list[Sent]:
    pub = bolt.publisher
    if not isinstance(pub, RecordingPublisher):
        raise TypeError(f"{bolt.name}: make the bolt with make_bolt (its publisher records what it sends)")
    start = len(pub.sent)
    step()
    return pub.sent[start:]


def flush(bolt: Bolt) -> list[Sent]:
    """Run the base class's flush (dedupe, flush(), apply, after_flush); return what it published."""
    return _recorded(bolt, bolt._flush)


def tick(bolt: Bolt) -> list[Sent]:
    """Run the base class's tick (tick(now) with the context's clock, then a flush); return what it published."""
    return _recorded(bolt, bolt._tick)


def run(bolt: Bolt, tuples: Iterable[Tuple]) -> list[Sent]:
    """feed, then flush."""
    feed(bolt, tuples)
    return flush(bolt)


def wait_until(cond: Callable[[], Any], timeout: float, step: float = 0.01) -> bool:
    """Wait (cooperatively: other greenlets run) until `cond()` is true; False after `timeout` seconds.

    What a test waits on instead of a sleep: a counter, a state, an event's flag.
    """
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(step)
    return True
