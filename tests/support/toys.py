"""Tiny spouts and bolts for runtime tests: they exercise the base classes, not the product's logic."""
from __future__ import annotations

import gevent

from analytics.component import Bolt, Spout
from analytics.store.base import Batch, MemberKey
from analytics.tuples import Tuple


class ListSpout(Spout):
    """Emits `count` tuples round-robin over `topics`, `per_call` per next_tuple, then ends."""
    name = "listspout"
    emits = ("toy.a", "toy.b")

    def initialize(self) -> None:
        self.i = 0
        self.count = int(self.option("count", 1000))
        self.per_call = int(self.option("per_call", 100))

    def next_tuple(self) -> bool:
        for _ in range(self.per_call):
            if self.i >= self.count:
                return False
            topic = self.emits[self.i % len(self.emits)]
            self.emit(topic, {"game": "g", "area": f"a{self.i % 3}", "n": self.i}, id=f"id{self.i}", ts=1420688004 + self.i)
            self.i += 1
        return True


class CollectBolt(Bolt):
    """Keeps every id it saw; re-emits each as 'toy.derived'."""
    name = "collect"
    topics = ("toy.a", "toy.b")
    emits = ("toy.derived",)

    def initialize(self) -> None:
        self.seen: list[str] = []
        self.delay = float(self.option("delay", 0))
        self.fail_on = self.option("fail_on")

    def process(self, tup: Tuple) -> None:
        if self.fail_on is not None and tup.body["n"] == self.fail_on:
            raise ValueError(f"bad n {tup.body['n']}")
        if self.delay:
            gevent.sleep(self.delay)
        self.seen.append(tup.id)
        self.emit("toy.derived", {"game": "g", "area": tup.body["area"], "of": tup.id}, id="d" + tup.id, ts=tup.ts)


class OnlyABolt(Bolt):
    name = "onlya"
    topics = ("toy.a",)

    def initialize(self) -> None:
        self.seen: list[str] = []

    def process(self, tup: Tuple) -> None:
        self.seen.append(tup.id)


class DerivedBolt(Bolt):
    name = "derived"
    topics = ("toy.derived",)

    def initialize(self) -> None:
        self.seen: list[str] = []

    def process(self, tup: Tuple) -> None:
        self.seen.append(tup.id)


class StoreSumBolt(Bolt):
    """Sums n per area into the store, with record-id dedupe, and counts distinct ids as members."""
    name = "storesum"
    topics = ("toy.a", "toy.b")
    dedupe = True

    def initialize(self) -> None:
        self.sums: dict[str, int] = {}
        self.members: dict[str, set[str]] = {}

    def process(self, tup: Tuple) -> None:
        area = tup.body["area"]
        self.sums[area] = self.sums.get(area, 0) + 1
        self.members.setdefault(area, set()).add(tup.id)

    def flush(self, batch: Batch) -> None:
        for area, n in self.sums.items():
            key = {"game": "g", "area": area, "plat": "1", "ts": 0}
            batch.upsert("toysum", key, inc={"n": n})
            batch.add_members(MemberKey("toy", "g", area, "1", 0), self.members[area], count_into=("toysum", key, "distinct"))
        self.sums, self.members = {}, {}
