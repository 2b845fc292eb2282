"""The topology: which spouts and bolts exist and how they are wired.

One definition (DEFAULT_COMPONENTS) runs either in one process (analytics.runners.LocalRunner:
greenlets over inproc://) or as separate processes over tcp (analytics.processes.ProcessRunner:
one per component, or `settings.workers` processes grouped by stage: worker_groups), chosen
by configuration only. Wiring is checked when the topology is built:
at least one spout, unique names, and every bolt topic produced by somebody (in a
partial topology, a replay of some sources or `run --only`: at least one topic of
every bolt; bolts fed by several sources read the others' state from the store).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from analytics.component import Bolt, Component, Spout
from analytics.config import Settings
from analytics.transport import topic_matches

__all__ = ["DEFAULT_COMPONENTS", "ComponentSpec", "Topology", "TopologyError", "default_topology", "stages",
           "worker_groups"]

log = logging.getLogger(__name__)

#: (component name, "module:Class") of the default topology. Bolt authors add their bolts here: the one
#: registration line of a statistic (wiring, collections, docs/schema.md, the three-host layout and the
#: reference test follow from it; tests/unit/test_registration.py).
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
