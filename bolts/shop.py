"""The shop bolt: items bought per server, day and item, from ``gamelog.shop_logbuy``.

A shop_logbuy record's data has item_id, item_name, count (items bought) and
cost (yuanbao spent on them in total). Sums, so dedupe = True (the base class
drops an already counted record id atomically with the $inc). Buyers are
distinct users in the membership set 'shop_day' with sub = item id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from analytics.aggregate import Keyed
from analytics.component import Bolt, Context
from analytics.periods import day_start
from analytics.schema import Collection
from analytics.store.base import Batch, MemberKey
from analytics.tuples import Tuple
from bolts.common import ServerKey, gamelog_event, need_int, need_number, need_str

__all__ = ["Purchase", "parse_purchase", "ShopSums", "ItemSums", "ShopBolt", "COLLECTIONS"]


# -- pure aggregation --------------------------------------------------------------------

class Purchase(NamedTuple):
    server: ServerKey
    uid: str
    ts: int
    item: str
    item_name: str
    count: int
    cost: int | float


def parse_purchase(body: Mapping[str, Any]) -> Purchase:
    ev = gamelog_event(body)
    d = ev.data
    count, cost = need_int(d, "count", "body.data"), need_number(d, "cost", "body.data")
    if count <= 0 or cost < 0:
        raise ValueError(f"body.data count must be > 0 and cost >= 0, got count={count!r} cost={cost!r}")
    name = d.get("item_name")
    return Purchase(ev.server, ev.uid, ev.ts, need_str(d, "item_id", "body.data"),
                    name if isinstance(name, str) else "", count, cost)


@dataclass
class ItemSums:
    count: int = 0
    buy_times: int = 0
    cost: int | float = 0
    item_name: str = ""
    users: set[str] = field(default_factory=set)


class ShopSums(Keyed[tuple[str, str, str, int, str], ItemSums]):
    """Sums per (game, area, plat, day, item) since the last take."""

    def __init__(self) -> None:
        super().__init__(ItemSums)

    def add(self, p: Purchase, tz: str) -> None:
        s = self.slot((*p.server, day_start(p.ts, tz), p.item))
        s.count += p.count
        s.buy_times += 1
        s.cost += p.cost
        s.item_name = p.item_name or s.item_name
        s.users.add(p.uid)


COLLECTIONS = [
    Collection("shop", ("game", "area", "plat", "ts", "item"), {
        "ts": "start of the day in the game's zone",
        "item": "item id (data.item_id)",
        "item_name": "item name (data.item_name, latest seen)",
        "count": "items bought (sum of data.count)",
        "buy_times": "purchase records",
        "cost": "yuanbao spent (sum of data.cost)",
        "users": "distinct buyers (size of set 'shop_day', sub = item)",
    }, userlist_set="shop_day", userlist_sub="item", doc="purchases of one item on one server on one day",
        writer="shop"),
]


# -- bolt --------------------------------------------------------------------------------

class ShopBolt(Bolt):
    name = "shop"
    topics = ["gamelog.shop_logbuy"]
    dedupe = True

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.sums = ShopSums()

    def process(self, tup: Tuple) -> None:
        p = parse_purchase(tup.body)
        self.sums.add(p, self.settings.tz_of(p.server.game))

    def flush(self, batch: Batch) -> None:
        for (game, area, plat, ts, item), s in sorted(self.sums.take().items()):
            key = {"game": game, "area": area, "plat": plat, "ts": ts, "item": item}
            batch.upsert("shop", key, inc={"count": s.count, "buy_times": s.buy_times, "cost": s.cost},
                         set={"item_name": s.item_name} if s.item_name else None)
            batch.add_members(MemberKey("shop_day", game, area, plat, ts, item), s.users,
                              count_into=("shop", key, "users"))
