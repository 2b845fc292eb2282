"""Components for the broker benchmark: a spout that emits ready-made gamelog bodies, a bolt that only decodes."""
from __future__ import annotations

from analytics.component import Bolt, Spout
from analytics.tuples import Tuple


class BenchSpout(Spout):
    """Emits `count` login bodies of ~217 bytes on the wire, as fast as the broker takes them."""
    name = "benchspout"
    emits = ("gamelog.login_logcount",)

    def initialize(self) -> None:
        self.count = int(self.option("count", 200_000))
        self.i = 0
        self.body = {"game": "dl", "area": "549140c8dbdb67794fc0fa3b", "plat": "2001", "uid": "3284681055",
                     "ts": 1420688004, "code": "login_logcount",
                     "data": {"corpid": 2001, "type": "signin", "server_name": "server1009", "opno": 1003}}

    def next_tuple(self) -> bool:
        end = min(self.i + 1000, self.count)
        emit, body = self.emit, self.body
        for i in range(self.i, end):
            emit("gamelog.login_logcount", body, id=str(i), ts=1420688004)
        self.i = end
        return end < self.count


class DecodeBolt(Bolt):
    """Receives and decodes every tuple (the base class does that) and counts them."""
    name = "decodebolt"
    topics = ("gamelog.login_logcount",)

    def initialize(self) -> None:
        self.n = 0

    def process(self, tup: Tuple) -> None:
        self.n += 1
