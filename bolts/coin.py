"""The coin bolts: yuanbao consumed and gained per hour (coinhour), per day (coinday)
and per day and reason (cointype), from ``gamelog.coin_logchange``.

A coin_logchange record's data has coin_type ('yuanbao' is counted; other
currencies such as 'gold' are ignored and counted as such), change (negative:
consumed, positive: gained; 0 is ignored), reason (what the yuanbao was spent on
or came from: 'shop', 'upgrade', 'recharge', ...) and rest (the balance after).

These are sums, so each bolt sets dedupe = True: the base class drops a record
id it has already counted, atomically with the write ($inc). Consumers are
distinct users (membership sets 'coin_hour' / 'coin_day'), exact anyway.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, NamedTuple

from analytics.aggregate import Keyed
from analytics.component import Bolt, Context
from analytics.periods import period_start
from analytics.schema import Collection
from analytics.store.base import Batch, MemberKey
from analytics.tuples import Tuple
from bolts.common import ServerKey, gamelog_event, need_int, need_str

__all__ = ["COUNTED_COIN", "CoinChange", "parse_coin", "CoinSums", "Sums", "CoinHourBolt", "CoinDayBolt",
           "CoinTypeBolt", "COLLECTIONS"]


# -- pure aggregation --------------------------------------------------------------------

#: The currency the coin bolts count.
COUNTED_COIN = "yuanbao"


class CoinChange(NamedTuple):
    server: ServerKey
    uid: str
    ts: int
    change: int
    reason: str


def parse_coin(body: Mapping[str, Any]) -> CoinChange | None:
    """Validate a coin_logchange body; None if it is not a yuanbao change (or changes nothing)."""
    ev = gamelog_event(body)
    coin_type = need_str(ev.data, "coin_type", "body.data")
    change = need_int(ev.data, "change", "body.data")
    reason = need_str(ev.data, "reason", "body.data")
    if coin_type != COUNTED_COIN or change == 0:
        return None
    return CoinChange(ev.server, ev.uid, ev.ts, change, reason)


@dataclass
class Sums:
    consumed: int = 0
    gained: int = 0
    #: Consumption records.
    consume_times: int = 0
    #: All records (consumption and gain).
    times: int = 0
    consumers: set[str] = field(default_factory=set)


class CoinSums(Keyed[tuple, Sums]):
    """Sums per (game, area, plat, period start[, reason]) since the last take."""

    def __init__(self, period: str, by_reason: bool = False) -> None:
        super().__init__(Sums)
        self.period = period
        self.by_reason = by_reason

    def add(self, c: CoinChange, tz: str) -> None:
        key: tuple = (*c.server, period_start(self.period, c.ts, tz))
        if self.by_reason:
            key += (c.reason,)
        s = self.slot(key)
        s.times += 1
        if c.change < 0:
            s.consumed -= c.change
            s.consume_times += 1
            s.consumers.add(c.uid)
        else:
            s.gained += c.change


# -- catalogue ---------------------------------------------------------------------------

def _period_doc(period: str, coll: str, members: str) -> Collection:
    return Collection(coll, ("game", "area", "plat", "ts"), {
        "ts": f"start of the {period} (in the game's zone)",
        "consumed": "yuanbao consumed (sum of -change over records with change < 0)",
        "gained": "yuanbao gained (sum of change over records with change > 0)",
        "consume_users": f"distinct users who consumed yuanbao (size of set '{members}')",
        "consume_times": "consumption records",
    }, userlist_set=members, doc=f"yuanbao flow of one server in one {period}", writer=coll)


COLLECTIONS = [
    _period_doc("hour", "coinhour", "coin_hour"),
    _period_doc("day", "coinday", "coin_day"),
    Collection("cointype", ("game", "area", "plat", "ts", "type"), {
        "ts": "start of the day in the game's zone",
        "type": "the reason of the change (data.reason: 'shop', 'upgrade', 'recharge', ...)",
        "consumed": "yuanbao consumed for this reason",
        "gained": "yuanbao gained for this reason",
        "times": "records with this reason",
    }, doc="yuanbao flow of one server on one day for one reason", writer="cointype"),
]


# -- bolts -------------------------------------------------------------------------------

class _CoinBolt(Bolt):
    topics = ["gamelog.coin_logchange"]
    dedupe = True
    period: ClassVar[str] = "day"
    by_reason: ClassVar[bool] = False

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.sums = CoinSums(self.period, self.by_reason)

    def process(self, tup: Tuple) -> None:
        c = parse_coin(tup.body)
        if c is None:
            self.counters.ignored += 1
            return
        self.sums.add(c, self.settings.tz_of(c.server.game))


class _CoinPeriodBolt(_CoinBolt):
    collection: ClassVar[str]
    member_set: ClassVar[str]

    def flush(self, batch: Batch) -> None:
        for (game, area, plat, ts), s in sorted(self.sums.take().items()):
            key = {"game": game, "area": area, "plat": plat, "ts": ts}
            batch.upsert(self.collection, key, inc={"consumed": s.consumed, "gained": s.gained,
                                                    "consume_times": s.consume_times},
                         set_on_insert={"consume_users": 0})
            if s.consumers:
                batch.add_members(MemberKey(self.member_set, game, area, plat, ts), s.consumers,
                                  count_into=(self.collection, key, "consume_users"))


class CoinHourBolt(_CoinPeriodBolt):
    name = "coinhour"
    period = "hour"
    collection = "coinhour"
    member_set = "coin_hour"


class CoinDayBolt(_CoinPeriodBolt):
    name = "coinday"
    period = "day"
    collection = "coinday"
    member_set = "coin_day"


class CoinTypeBolt(_CoinBolt):
    name = "cointype"
    period = "day"
    by_reason = True

    def flush(self, batch: Batch) -> None:
        for (game, area, plat, ts, reason), s in sorted(self.sums.take().items()):
            batch.upsert("cointype", {"game": game, "area": area, "plat": plat, "ts": ts, "type": reason},
                         inc={"consumed": s.consumed, "gained": s.gained, "times": s.times})
