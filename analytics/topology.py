"""The topology: which spouts and bolts exist, how they are wired, and how to run them.

One definition (DEFAULT_COMPONENTS) runs either in one process (LocalRunner:
greenlets over inproc://) or as separate processes over tcp (ProcessRunner: one per
component, or `settings.workers` processes grouped by stage: worker_groups), chosen
by configuration only. Wiring is checked when the topology is built:
at least one spout, unique names, and every bolt topic produced by somebody (in a
partial topology, a replay of some sources or `run --only`: at least one topic of
every bolt; bolts fed by several sources read the others' state from the store).
"""
from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import gevent

from analytics.broker import Broker
from analytics.component import Bolt, Component, Context, Spout
from analytics.config import Settings
from analytics.transport import CTL_TOPIC, REPORT, SharedSubscriber, Subscriber, new_context, topic_matches
from analytics.codec import decode_obj
from analytics.deadletter import DeadLetters

__all__ = ["DEFAULT_COMPONENTS", "ComponentSpec", "Topology", "TopologyError", "LocalRunner",
           "DrainReport", "COORDINATOR", "default_topology", "stages", "worker_groups"]

log = logging.getLogger(__name__)

#: (component name, "module:Class") of the default topology. Bolt authors add their bolts here.
DEFAULT_COMPONENTS: list[tuple[str, str]] = [
    ("gamelog", "spouts.gamelog:GamelogSpout"),
    ("payment", "spouts.payment:PaymentSpout"),
    ("syncuser", "spouts.syncuser:SyncUserSpout"),
    ("http", "spouts.http_intake:HttpIntakeSpout"),
    ("loginhour", "bolts.login:LoginHourBolt"),
    ("loginday", "bolts.login:LoginDayBolt"),
    ("signuphour", "bolts.signup:SignupHourBolt"),
    ("signupday", "bolts.signup:SignupDayBolt"),
    ("createrolehour", "bolts.createrole:CreateRoleHourBolt"),
    ("createroleday", "bolts.createrole:CreateRoleDayBolt"),
    ("payorderuser", "bolts.payment:PayOrderUserBolt"),
    ("server", "bolts.server:ServerBolt"),
    ("usercenter", "bolts.users:UserCenterBolt"),
    ("userlevel", "bolts.users:UserLevelBolt"),
    ("coinhour", "bolts.coin:CoinHourBolt"),
    ("coinday", "bolts.coin:CoinDayBolt"),
    ("cointype", "bolts.coin:CoinTypeBolt"),
    ("shop", "bolts.shop:ShopBolt"),
    ("gamecopy", "bolts.gamecopy:GameCopyBolt"),
    ("mainline", "bolts.mainline:MainlineBolt"),
    ("serverstarttime", "bolts.serverstarttime:ServerStartTimeBolt"),
    ("activeday", "bolts.active:ActiveDayBolt"),
    ("activeweek", "bolts.active:ActiveWeekBolt"),
    ("activemonth", "bolts.active:ActiveMonthBolt"),
    ("loginretention", "bolts.retention:LoginRetentionBolt"),
    ("paytraceday", "bolts.paytrace:PayTraceDayBolt"),
    ("cohortltv", "bolts.cohorts:CohortLtvBolt"),
    ("funnelday", "bolts.cohorts:FunnelDayBolt"),
]

def shared_subscription(zctx: Any, sender: str, settings: Settings) -> SharedSubscriber:
    """The one SUB socket of a process's bolts; what arrives malformed goes to deadletter/subscriber.jsonl."""
    sub = SharedSubscriber(zctx, sender, hwm=settings.broker.hwm)
    letters = DeadLetters(settings.data_path("deadletter"), "subscriber")
    sub.on_malformed = lambda frames, reason: letters.write(repr([bytes(f)[:256] for f in frames[:4]]),
                                                            f"frame: {reason}")
    return sub


#: Name under which a runner listens for drain reports.
COORDINATOR = "_coordinator"


class TopologyError(ValueError):
    """The topology's wiring is wrong; the message says where."""


def load_class(path: str) -> type[Component]:
    """Import "module:Class"."""
    module, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise TopologyError(f"cannot load component class {path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, (Spout, Bolt))):
        raise TopologyError(f"{path!r} is not a Spout or Bolt subclass")
    return cls


@dataclass
class ComponentSpec:
    """One component of a topology: its name, class and options."""
    name: str
    cls: str
    options: dict[str, Any] = field(default_factory=dict)

    def load(self) -> type[Component]:
        return load_class(self.cls)


class Topology:
    """A validated set of components and the wiring derived from their topics."""

    def __init__(self, specs: Iterable[ComponentSpec], *, partial: bool = False) -> None:
        """`partial`: a part of a topology (a replay of some sources, `run --only`): a bolt may
        subscribe to topics nobody here emits, as long as one of its topics is fed."""
        self.specs: dict[str, ComponentSpec] = {}
        self.classes: dict[str, type[Component]] = {}
        for spec in specs:
            if spec.name in self.specs:
                raise TopologyError(f"duplicate component name {spec.name!r}")
            self.specs[spec.name] = spec
            self.classes[spec.name] = spec.load()
        if not self.spouts:
            raise TopologyError("a topology requires at least one spout")
        for name in self.bolts:
            cls = self.classes[name]
            if not cls.topics:
                raise TopologyError(f"bolt {name!r} subscribes to no topic")
            unfed = [p for p in cls.topics if not any(topic_matches(p, t) for _, t in self.emitted())]
            if unfed and not partial:
                raise TopologyError(f"bolt {name!r} subscribes to {unfed[0]!r}, which no component emits")
            if partial and len(unfed) == len(cls.topics):
                raise TopologyError(f"bolt {name!r}: none of its topics ({', '.join(cls.topics)}) is emitted "
                                    f"by a component of this topology")

    @property
    def spouts(self) -> list[str]:
        return [n for n, c in self.classes.items() if issubclass(c, Spout)]

    @property
    def bolts(self) -> list[str]:
        return [n for n, c in self.classes.items() if issubclass(c, Bolt)]

    def emitted(self) -> list[tuple[str, str]]:
        """(producer, topic) for every topic every component emits."""
        return [(n, t) for n, c in self.classes.items() for t in c.emits]

    def expected_barriers(self, bolt: str) -> frozenset[tuple[str, str]]:
        """The (producer, topic) barriers a bolt must see before it has drained."""
        patterns = self.classes[bolt].topics
        return frozenset((p, t) for p, t in self.emitted() if any(topic_matches(pat, t) for pat in patterns))

    def upstream_spouts(self, name: str) -> frozenset[str]:
        """The spouts whose tuples reach `name`, directly or through other bolts."""
        if name in self.classes and issubclass(self.classes[name], Spout):
            return frozenset({name})
        if getattr(self, "_upstream", None) is None:
            spouts = set(self.spouts)
            inputs = {b: [p for p, _ in self.expected_barriers(b)] for b in self.bolts}
            found: dict[str, set[str]] = {b: set() for b in self.bolts}
            grew = True
            while grew:
                grew = False
                for bolt, producers in inputs.items():
                    before = len(found[bolt])
                    for producer in producers:
                        found[bolt] |= {producer} if producer in spouts else found.get(producer, set())
                    grew |= len(found[bolt]) != before
            self._upstream = {b: frozenset(v) for b, v in found.items()}
        return self._upstream.get(name, frozenset())

    def origin_links(self, bolt: str) -> dict[str, frozenset[tuple[str, str]]]:
        """Per spout, the links (producer, topic) into `bolt` that carry its tuples: where the
        bolt waits for that spout's checkpoint barriers before it acknowledges an epoch."""
        out: dict[str, set[tuple[str, str]]] = {}
        for producer, topic in self.expected_barriers(bolt):
            for spout in self.upstream_spouts(producer):
                out.setdefault(spout, set()).add((producer, topic))
        return {s: frozenset(links) for s, links in out.items()}

    def ackers(self, spout: str) -> frozenset[str]:
        """The bolts that must store a checkpoint epoch of `spout` before its position is committed."""
        return frozenset(b for b in self.bolts if spout in self.upstream_spouts(b))

    def context_wiring(self, name: str, settings: Settings) -> dict[str, Any]:
        """What a component's Context needs from the wiring (barriers it expects, checkpoint links).

        A spout feeding a bolt that runs as several partitioned instances gets no checkpoints
        (ackers None): its positions are saved as it reads, as before (docs/operations.md).
        """
        if issubclass(self.classes[name], Bolt):
            return {"expected_barriers": self.expected_barriers(name), "origin_links": self.origin_links(name)}
        ackers = self.ackers(name)
        if any(settings.component(b).get("instances", 1) != 1 for b in ackers):
            return {"ackers": None}
        return {"ackers": ackers}

    def with_spouts(self, spouts: Iterable[ComponentSpec]) -> "Topology":
        """This topology's bolts fed by other spouts (a replay): every bolt that one of them
        feeds, directly or through other bolts, even if its other inputs are absent (the
        server bolt in a replay of payment files only: its bolts read what the absent
        sources stored before). Bolts nobody feeds are left out."""
        return Topology(_fed_bolts(list(spouts), [self.specs[n] for n in self.bolts]), partial=True)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "cls": s.cls, "options": s.options} for s in self.specs.values()]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> "Topology":
        """A topology written by to_json (already validated where it was built, possibly partial)."""
        return cls((ComponentSpec(d["name"], d["cls"], d.get("options", {})) for d in data), partial=True)


def _fed_bolts(spouts: list[ComponentSpec], bolts: list[ComponentSpec]) -> list[ComponentSpec]:
    """The spouts and every bolt one of whose topics a spout or an already kept bolt emits."""
    classes = {s.name: s.load() for s in spouts + bolts}
    emitted = {t for s in spouts for t in classes[s.name].emits}
    kept: set[str] = set()
    grew = True
    while grew:
        grew = False
        for b in bolts:
            if b.name not in kept and any(topic_matches(p, t) for p in classes[b.name].topics for t in emitted):
                kept.add(b.name)
                emitted.update(classes[b.name].emits)
                grew = True
    return spouts + [b for b in bolts if b.name in kept]


def stages(topology: Topology) -> dict[str, int]:
    """Each component's depth in the flow: spouts 0, a bolt one more than its deepest producer.

    (loginhour 1, loginday 2, activeday 3 ...). A bolt that feeds on its own stage's
    output (a cycle) stays where it was first put.
    """
    depth = {name: 0 for name in topology.spouts}
    producers = {name: {p for p, t in topology.expected_barriers(name)} for name in topology.bolts}
    for _ in range(len(topology.specs)):
        changed = False
        for bolt, prods in producers.items():
            known = [depth[p] for p in prods if p in depth and p != bolt]
            if known:
                d = 1 + max(known)
                if depth.get(bolt, -1) < d and d < len(topology.specs):
                    depth[bolt] = d
                    changed = True
        if not changed:
            break
    for bolt in topology.bolts:
        depth.setdefault(bolt, 1)
    return depth


def worker_groups(topology: Topology, workers: int) -> list[list[str]]:
    """Split a topology over `workers` processes by stage (pipeline parallelism, as Storm's workers).

    Worker k runs stage k and the last worker every deeper stage too: with 3 workers,
    the spouts, then the bolts they feed (loginhour ...), then the rest (loginday,
    the timers ...). Each worker keeps a core busy with its part of the flow.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    depth = stages(topology)
    groups: list[list[str]] = [[] for _ in range(workers)]
    for name in topology.specs:
        groups[min(depth[name], workers - 1)].append(name)
    return [g for g in groups if g]


def default_topology(settings: Settings, only: Iterable[str] | None = None) -> Topology:
    """The default topology, with per-source options from settings.sources."""
    specs = [ComponentSpec(n, c, dict(settings.sources.get(n, {}))) for n, c in DEFAULT_COMPONENTS]
    if only is None:
        return Topology(specs)
    wanted = set(only)
    return Topology([s for s in specs if s.name in wanted], partial=True)


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
