"""Running a topology: in this process (LocalRunner: the broker and every component as
greenlets over inproc://), and what every runner shares: the drain coordinator and its report,
and the one subscription of a process's bolts. analytics.processes runs one over tcp processes.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gevent

from analytics.broker import Broker
from analytics.component import Component, Context
from analytics.config import Settings
from analytics.transport import CTL_TOPIC, REPORT, SharedSubscriber, Subscriber, new_context
from analytics.codec import decode_obj
from analytics.deadletter import DeadLetters
from analytics.topology import Topology

__all__ = ["LocalRunner", "DrainReport", "Coordinator", "COORDINATOR", "shared_subscription"]

log = logging.getLogger(__name__)


def shared_subscription(zctx: Any, sender: str, settings: Settings) -> SharedSubscriber:
    """The one SUB socket of a process's bolts; what arrives malformed goes to deadletter/subscriber.jsonl."""
    sub = SharedSubscriber(zctx, sender, hwm=settings.broker.hwm)
    letters = DeadLetters(settings.data_path("deadletter"), "subscriber")
    sub.on_malformed = lambda frames, reason: letters.write(repr([bytes(f)[:256] for f in frames[:4]]),
                                                            f"frame: {reason}")
    return sub


#: Name under which a runner listens for drain reports.
COORDINATOR = "_coordinator"


@dataclass
class DrainReport:
    """What every component said when the stream ended: the transfer-count check reads it."""
    spouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    bolts: dict[str, dict[str, Any]] = field(default_factory=dict)
    broker: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: The topology that produced the reports.
    topology: Topology | None = None

    def problems(self, topology: Topology | None = None) -> list[str]:
        """Every (producer, topic) -> bolt hop whose counts disagree (empty when all arrived)."""
        topology = topology or self.topology
        sent = {name: r.get("sent", {}) for name, r in {**self.spouts, **self.bolts}.items()}
        out = []
        for bolt in topology.bolts:
            report = self.bolts.get(bolt)
            if report is None:
                out.append(f"{bolt}: no drain report")
                continue
            got = report.get("received_from", {})
            for producer, topic in sorted(topology.expected_barriers(bolt)):
                want = sent.get(producer, {}).get(topic, 0)
                have = got.get(f"{producer}|{topic}", 0)
                if want != have:
                    out.append(f"{producer} sent {want} on {topic}, {bolt} received {have}")
            if report.get("lost"):
                out.append(f"{bolt}: {report['lost']} tuples lost")
        return out

    def store_ops(self) -> dict[str, int] | None:
        """Store operations of the run (rows or documents read and written), each store counted once.

        None when no bolt's store counts its operations. A store's counters only grow, so
        the largest a bolt reported is the store's figure at the end of the run.
        """
        per_store: dict[str, dict[str, int]] = {}
        for r in self.bolts.values():
            ops = r.get("store_ops")
            if not ops:
                continue
            mine = per_store.setdefault(ops["store"], {})
            for k, v in ops.items():
                if k != "store":
                    mine[k] = max(mine.get(k, 0), v)
        if not per_store:
            return None
        total: dict[str, int] = {}
        for ops in per_store.values():
            for k, v in ops.items():
                total[k] = total.get(k, 0) + v
        return total

    def totals(self) -> dict[str, int]:
        """read/accepted/rejected/ignored/deduplicated over the whole run."""
        t = {"accepted": 0, "rejected": 0, "ignored": 0, "deduplicated": 0, "errors": 0}
        for r in self.spouts.values():
            # Records, not tuples: a spout that packs several records into one tuple counts the rest.
            t["accepted"] += sum(r.get("sent", {}).values()) + r.get("combined", 0)
            t["rejected"] += r.get("rejected", 0)
            t["ignored"] += r.get("ignored", 0)
            t["errors"] += r.get("errors", 0)
        for r in self.bolts.values():
            t["deduplicated"] += r.get("deduplicated", 0)
            t["rejected"] += r.get("rejected", 0)
            t["errors"] += r.get("errors", 0)
        t["read"] = t["accepted"] + t["rejected"] + t["ignored"]
        return t


class Coordinator:
    """Listens on the control topic for end-of-stream and drained reports."""

    def __init__(self, ctx: Any, sender: str, topology: Topology, hwm: int = 1000) -> None:
        self.topology = topology
        self.sub = Subscriber(ctx, sender, COORDINATOR, [CTL_TOPIC], hwm=hwm)
        self.report = DrainReport(topology=topology)

    def wait(self, timeout: float | None, on_report: Callable[[dict], None] | None = None) -> DrainReport:
        """Collect reports until every spout has ended and every bolt has drained; TimeoutError after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        started = time.monotonic()
        # Every spout's end-of-stream report and every bolt's drained report: they come over
        # different connections, so a bolt's report may overtake the spout's.
        want = set(self.topology.bolts) | set(self.topology.spouts)

        def missing() -> list[str]:
            return sorted(want - self.report.bolts.keys() - self.report.spouts.keys())
        while missing():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"not drained after {timeout:.0f}s: waiting for {', '.join(missing())}")
            msg = self.sub.recv(min(0.5, left) if left is not None else 0.5)
            if msg is None or msg.kind != REPORT:
                continue
            info = decode_obj(msg.payload)
            if info.get("event") == "eos":
                self.report.spouts[info["component"]] = info
            elif info.get("event") == "drained":
                self.report.bolts[info["component"]] = info
            if on_report:
                on_report(info)
        self.report.seconds = time.monotonic() - started
        return self.report

    def close(self) -> None:
        self.sub.close()


class LocalRunner:
    """Runs a whole topology in this process: broker and every component as greenlets over inproc."""

    def __init__(self, topology: Topology, settings: Settings, *, store: Any = None,
                 disk_log: bool = True, clock: Callable[[], float] = time.time, listen: bool = False) -> None:
        """`listen`: also bind the configured tcp receiver/sender, so feeders outside this
        process (bin/read_stdin_gamelog, spouts on other hosts) reach the topology."""
        self.topology = topology
        self.settings = settings
        self.store = store
        self.disk_log = disk_log
        self.clock = clock
        self.zmq = new_context(settings)
        tag = f"{id(self):x}"
        self.receiver = f"inproc://receiver-{tag}"
        self.sender = f"inproc://sender-{tag}"
        self.listen = listen
        self.components: dict[str, Component] = {}
        self.greenlets: list[gevent.Greenlet] = []
        self.broker: Broker | None = None
        self.coordinator: Coordinator | None = None
        #: One subscription for every bolt: a frame is received and decoded once.
        self.subscriptions: SharedSubscriber | None = None

    def start(self) -> "LocalRunner":
        """Start the broker and the bolts, wait until they are all subscribed, then the spouts."""
        expected = set(self.topology.bolts) | {COORDINATOR}
        b = self.settings.broker
        receivers, senders = [self.receiver], [self.sender]
        if self.listen:
            receivers.append(b.receiver)
            senders.append(b.sender)
        self.broker = Broker(self.zmq, receivers, senders, expected=expected, hwm=b.hwm,
                             hold_when_missing=b.wait_for_subscribers,
                             dead_letters=DeadLetters(self.settings.data_path("deadletter"), "broker")).start()
        self.coordinator = Coordinator(self.zmq, self.sender, self.topology, hwm=b.hwm)
        self.subscriptions = shared_subscription(self.zmq, self.sender, self.settings)
        for name in self.topology.bolts:
            self._spawn(name)
        for name in self.topology.spouts:
            self._spawn(name)
        return self

    def _spawn(self, name: str) -> None:
        spec, cls = self.topology.specs[name], self.topology.classes[name]
        ctx = Context(self.settings, self.zmq, self.receiver, self.sender, store=self.store, clock=self.clock,
                      disk_log=self.disk_log, subscriptions=self.subscriptions,
                      **self.topology.context_wiring(name, self.settings))
        component = cls(ctx, name, **spec.options)
        self.components[name] = component
        g = gevent.spawn(component.run)
        g.name = name
        self.greenlets.append(g)

    def failures(self) -> list[str]:
        """What died that should be running: a component or the broker's greenlet that raised,
        or the broker or the shared subscription that stopped. A process with any of these is
        half alive: `analytics run` exits non-zero so that its supervisor restarts it."""
        out = [f"{g.name}: {g.exception!r}" for g in self.greenlets if g.dead and g.exception is not None]
        b = self.broker
        if b is not None and b._greenlet is not None and b._greenlet.dead and b._running:
            out.append(f"broker: {b._greenlet.exception!r}" if b._greenlet.exception is not None
                       else "broker: stopped forwarding")
        sub = self.subscriptions
        if sub is not None and sub._greenlet is not None and sub._greenlet.dead:
            out.append(f"shared subscription: {sub._greenlet.exception!r}")
        return out

    def wait_drained(self, timeout: float | None = None,
                     on_report: Callable[[dict], None] | None = None) -> DrainReport:
        """Block until every bolt has drained after every spout ended (finite spouts only).

        A component whose greenlet died (an exception the base classes do not handle,
        such as a bug in a store) makes this fail at once rather than at the timeout.
        """
        waiter = gevent.spawn(self.coordinator.wait, timeout, on_report)
        while not waiter.ready():
            dead = [g for g in self.greenlets if g.dead and g.exception is not None]
            if dead:
                waiter.kill()
                raise RuntimeError("component died: " + "; ".join(f"{g.name}: {g.exception!r}" for g in dead))
            gevent.wait([waiter], timeout=0.1)
        report = waiter.get()
        report.broker = self.broker.stats()
        return report

    def stop(self, timeout: float = 30) -> None:
        """Stop spouts first, then bolts (each flushes), then the broker."""
        if self.broker:
            self.broker.hold_when_missing = False  # shutting down: deliver what is queued
        # All spouts, then all bolts at once: each loop notices within its poll interval,
        # so stopping them one after the other cost ~30 ms a bolt (0.6 s of a short replay).
        for names in (self.topology.spouts, self.topology.bolts):
            for name in names:
                self.components[name].stop()
            for name in names:
                self.components[name].finished.wait(timeout)
        gevent.joinall(self.greenlets, timeout=timeout)
        if self.coordinator:
            self.coordinator.close()
        if self.subscriptions:
            self.subscriptions.close()
        if self.broker:
            self.broker.stop()
        self.zmq.term()
