"""Run a spout against a real PULL socket bound by the test, and keep what arrives.

    with Sink() as sink:                       # inproc://…, or Sink("tcp") for tcp://127.0.0.1:<free port>
        spout = GamelogSpout(sink.context(settings), files=[...], follow=False, game="dl")
        sink.run(spout)                        # until the spout finishes (or `until` holds, then stop it)
        sink.tuples                            # [Tuple(topic, id, ts, body), ...] in arrival order
        sink.barriers, sink.reports

Frames are decoded with the runtime's own transport.parse and codec.decode_batch.
"""
from __future__ import annotations

import itertools
import time
from typing import Any, Callable

import gevent
import zmq.green as zmq

from analytics.codec import decode_batch, decode_obj
from analytics.component import Context, Spout
from analytics.config import Settings
from analytics.transport import BARRIER, DATA, REPORT, parse
from analytics.tuples import Tuple

__all__ = ["Sink"]

_n = itertools.count()


class Sink:
    def __init__(self, kind: str = "inproc", zctx: zmq.Context | None = None) -> None:
        self.zctx = zctx or zmq.Context()
        self.sock = self.zctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        if kind == "inproc":
            self.endpoint = f"inproc://spout-sink-{next(_n)}"
            self.sock.bind(self.endpoint)
        else:
            port = self.sock.bind_to_random_port("tcp://127.0.0.1")
            self.endpoint = f"tcp://127.0.0.1:{port}"
        self.tuples: list[Tuple] = []
        self.barriers: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        #: Called with each data frame's tuples as it arrives (e.g. to check the disk log).
        self.on_frame: Callable[[list[Tuple]], None] | None = None

    def context(self, settings: Settings, **kw: Any) -> Context:
        return Context(settings=settings, zmq=self.zctx, receiver=self.endpoint, sender="inproc://unused", **kw)

    def poll(self, timeout: float = 0.05) -> int:
        """Receive what is there (waiting up to `timeout` for the first frame); returns tuples received."""
        got = 0
        while self.sock.poll(int(timeout * 1000), zmq.POLLIN):
            timeout = 0
            msg = parse(self.sock.recv_multipart())
            if msg.kind == DATA:
                tuples = decode_batch(msg.topic, msg.payload)
                if self.on_frame is not None:
                    self.on_frame(tuples)
                self.tuples.extend(tuples)
                got += len(tuples)
            elif msg.kind == BARRIER:
                self.barriers.append({"topic": msg.topic, **decode_obj(msg.payload)})
            elif msg.kind == REPORT:
                self.reports.append(decode_obj(msg.payload))
        return got

    def _ended(self, name: str) -> int:
        return sum(1 for r in self.reports if r.get("event") == "eos" and r.get("component") == name)

    def start(self, spout: Spout) -> gevent.Greenlet:
        """Run the spout in a greenlet (receive with `collect`)."""
        g = gevent.spawn(spout.run)
        g.ends_before = self._ended(spout.name)
        return g

    def collect(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        """Receive until `until()` holds; fails the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s with {len(self.tuples)} tuples received")
            self.poll(0.02)

    def run(self, spout: Spout, timeout: float = 10.0) -> list[Tuple]:
        """Run a finite spout to its end; returns every tuple it sent."""
        g = self.start(spout)
        self.collect(lambda: self._ended(spout.name) > g.ends_before, timeout)
        g.join(timeout)
        if g.exception is not None:
            raise g.exception
        return self.tuples

    def stop(self, spout: Spout, greenlet: gevent.Greenlet, timeout: float = 5.0) -> None:
        """Stop a running spout and receive everything it sent until its end of stream."""
        spout.stop()
        self.collect(lambda: self._ended(spout.name) > greenlet.ends_before, timeout)
        greenlet.join(timeout)

    def by_topic(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tuples:
            out[t.topic] = out.get(t.topic, 0) + 1
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
