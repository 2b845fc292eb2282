"""The broker: a receiver (PULL) that spouts and bolts push to, forwarding to a
sender (XPUB) that bolts subscribe to by topic prefix.

Nothing is dropped silently:
* XPUB_NODROP makes a full subscriber pipe refuse the send (EAGAIN) instead of
  discarding; the broker then stops reading the receiver, the receiver's pipes
  fill, and the producers' sends block: backpressure all the way to the spouts.
* Until every expected subscriber has announced it is ready (see transport.py),
  the receiver is not read at all, so no tuple is published before the bolts of
  its topic are connected. A subscriber that goes away pauses forwarding again
  until it is back (`hold_when_missing`).
* Every frame is counted per topic, received and sent; a frame that matched no
  subscription is counted as unrouted.
* A malformed message (wrong number of frames, a bad topic key or header, from a
  foreign or forged peer) is counted, dead-lettered and dropped: it never stops the
  broker. Payloads are not decoded here; the receiving bolt checks them.
* Nobody else pushes at all when the context has curve_keys: both sockets are CURVE
  servers on tcp and a client whose key is not in the directory is refused during the
  handshake (transport.secure); without keys only loopback is bound, unless insecure.
"""
from __future__ import annotations

import logging
from typing import Iterable, Sequence

import gevent
import gevent.event
import zmq.green as zmq

from analytics.deadletter import DeadLetters
from analytics.transport import DATA, READY_PREFIX, Malformed, parse_head, secure

__all__ = ["Broker"]

log = logging.getLogger(__name__)


def _listed(endpoints: str | Sequence[str]) -> list[str]:
    return [endpoints] if isinstance(endpoints, str) else list(endpoints)


class Broker:
    """Forwards frames from `receiver` to `sender`, gated on subscriber readiness."""

    #: Seconds before the first retry when a subscriber pipe is full; doubling up to full_retry_max
    #: (a fixed short interval spins: it cost the broker a core's fifth while a bolt was behind).
    full_retry = 0.0005
    full_retry_max = 0.005

    def __init__(self, ctx: zmq.Context, receiver: str | Sequence[str], sender: str | Sequence[str], *,
                 expected: Iterable[str] = (),
                 hwm: int = 1000, hold_when_missing: bool = True,
                 dead_letters: DeadLetters | None = None) -> None:
        self.expected = set(expected)
        #: Where malformed messages go (None: only counted and logged).
        self.dead_letters = dead_letters
        self.malformed = 0
        self.hold_when_missing = hold_when_missing
        self.ctx = ctx
        self.receiver = ctx.socket(zmq.PULL)
        self.receiver.setsockopt(zmq.RCVHWM, hwm)
        self.receiver.setsockopt(zmq.LINGER, 0)
        self.sender = ctx.socket(zmq.XPUB)
        self.sender.setsockopt(zmq.SNDHWM, hwm)
        self.sender.setsockopt(zmq.XPUB_NODROP, 1)
        self.sender.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscribe, also duplicates
        self.sender.setsockopt(zmq.LINGER, 0)
        # Several endpoints may be bound (inproc for local components, tcp for outside feeders).
        self.receiver_endpoints = [self._bind(self.receiver, e) for e in _listed(receiver)]
        self.sender_endpoints = [self._bind(self.sender, e) for e in _listed(sender)]
        self.receiver_endpoint, self.sender_endpoint = self.receiver_endpoints[0], self.sender_endpoints[0]
        self.ready: dict[str, int] = {}
        self.subscriptions: dict[bytes, int] = {}
        self.received: dict[str, int] = {}   # tuples per topic
        self.sent: dict[str, int] = {}
        self.frames_in = 0
        self.frames_out = 0
        self.unrouted: dict[str, int] = {}
        self.blocked_seconds = 0.0
        self._running = False
        self._greenlet: gevent.Greenlet | None = None
        self._ready_event = gevent.event.Event()

    @staticmethod
    def _bind(sock: zmq.Socket, endpoint: str) -> str:
        secure(sock, endpoint, server=True)
        if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
            port = sock.bind_to_random_port(endpoint.rsplit(":", 1)[0])
            return f"{endpoint.rsplit(':', 1)[0]}:{port}"
        sock.bind(endpoint)
        return endpoint

    # -- readiness -------------------------------------------------------------------
    def missing(self) -> set[str]:
        """Expected subscribers that are not connected and ready."""
        return {n for n in self.expected if self.ready.get(n, 0) <= 0}

    def is_open(self) -> bool:
        """Whether the receiver is read: after the start-up handshake, and while nobody is missing."""
        if self.hold_when_missing:
            return not self.missing()
        return self._ready_event.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every expected subscriber is ready; False on timeout."""
        return self._ready_event.wait(timeout)

    def _on_subscription(self, msg: bytes) -> None:
        subscribe, prefix = msg[:1] == b"\x01", msg[1:]
        delta = 1 if subscribe else -1
        self.subscriptions[prefix] = self.subscriptions.get(prefix, 0) + delta
        if self.subscriptions[prefix] <= 0:
            del self.subscriptions[prefix]
        if prefix.startswith(READY_PREFIX):
            name = prefix[len(READY_PREFIX):].decode(errors="replace")
            self.ready[name] = self.ready.get(name, 0) + delta
            log.info("subscriber %s %s (%d connected)", name, "ready" if subscribe else "gone",
                     max(self.ready[name], 0))
            if not self.missing():
                self._ready_event.set()
            elif name in self.expected and self.hold_when_missing:
                # Waiting at start-up is normal; a subscriber lost later is worth a warning.
                level = logging.WARNING if self._ready_event.is_set() else logging.INFO
                log.log(level, "holding: waiting for subscribers %s", ", ".join(sorted(self.missing())))

    def _routed(self, key: bytes) -> bool:
        return any(key.startswith(p) for p in self.subscriptions)

    # -- forwarding ------------------------------------------------------------------
    def _drain_subscriptions(self) -> None:
        while True:
            try:
                self._on_subscription(self.sender.recv(zmq.NOBLOCK))
            except zmq.Again:
                return

    def _forward(self, frames: list) -> None:
        try:
            if len(frames) != 3:
                raise Malformed(f"expected 3 frames, got {len(frames)}")
            key = frames[0].bytes
            kind, topic, _, _, count = parse_head(key, frames[1].bytes)
        except Malformed as exc:
            self._reject(frames, str(exc))
            return
        n = count if kind == DATA else 0
        self.frames_in += 1
        self.received[topic] = self.received.get(topic, 0) + n
        if not self._routed(key):
            self.unrouted[topic] = self.unrouted.get(topic, 0) + n
            return
        waited, delay = 0.0, self.full_retry
        while True:
            try:
                self.sender.send_multipart(frames, zmq.NOBLOCK, copy=False)
                break
            except zmq.Again:  # a subscriber is full: wait, never drop
                gevent.sleep(delay)
                waited += delay
                delay = min(delay * 2, self.full_retry_max)
                self._drain_subscriptions()
        self.blocked_seconds += waited
        self.frames_out += 1
        self.sent[topic] = self.sent.get(topic, 0) + n

    def _reject(self, frames: list, reason: str) -> None:
        """Count, log and dead-letter a malformed message (its first bytes), then go on."""
        self.malformed += 1
        if self.malformed <= 10 or self.malformed % 1000 == 0:
            log.error("broker: dropping malformed message #%d: %s", self.malformed, reason)
        if self.dead_letters is not None:
            self.dead_letters.write(repr([f.bytes[:256] for f in frames[:4]])[:2000], f"frame: {reason}")

    def serve_forever(self) -> None:
        """Run until stop(): forward frames while every expected subscriber is ready."""
        self._running = True
        if not self.expected:
            self._ready_event.set()
        poller = zmq.Poller()
        poller.register(self.sender, zmq.POLLIN)
        receiving = False
        while self._running:
            open_ = self.is_open()
            if open_ != receiving:
                (poller.register(self.receiver, zmq.POLLIN) if open_ else poller.unregister(self.receiver))
                receiving = open_
            events = dict(poller.poll(100))
            if self.sender in events:
                self._drain_subscriptions()
            if receiving and self.receiver in events:
                # Forward a bounded run of frames, then look at subscriptions again.
                for _ in range(256):
                    try:
                        frames = self.receiver.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._forward(frames)

    def start(self) -> "Broker":
        self._greenlet = gevent.spawn(self.serve_forever)
        return self

    def stop(self, timeout: float | None = 5) -> None:
        self._running = False
        if self._greenlet is not None:
            self._greenlet.join(timeout)
        self.receiver.close()
        self.sender.close()
        if self.dead_letters is not None:
            self.dead_letters.close()

    def stats(self) -> dict:
        """Counters for status reporting and the transfer-count check."""
        return {"received": dict(self.received), "sent": dict(self.sent), "unrouted": dict(self.unrouted),
                "frames_in": self.frames_in, "frames_out": self.frames_out, "malformed": self.malformed,
                "refused": getattr(self.ctx, "refused", 0),
                "blocked_seconds": round(self.blocked_seconds, 3),
                "ready": {k: v for k, v in self.ready.items() if v > 0}, "missing": sorted(self.missing())}
