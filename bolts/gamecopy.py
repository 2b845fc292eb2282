"""The gamecopy bolt: dungeon (fuben) entries and completions per server, day and dungeon.

Input ``gamelog.fuben_logchange``: data has fuben_id, fuben_name and action
('enter' or 'finish'). enters/finishes are sums, so dedupe = True; users (distinct
users who entered or finished) come from the set 'fuben_day' with sub = fuben id.
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
from bolts.common import ServerKey, gamelog_event, need_str

__all__ = ["ACTIONS", "FubenEvent", "parse_fuben", "FubenSums", "GameCopyBolt", "COLLECTIONS"]


# -- pure aggregation --------------------------------------------------------------------

ACTIONS = ("enter", "finish")


class FubenEvent(NamedTuple):
    server: ServerKey
    uid: str
    ts: int
    fuben: str
    fuben_name: str
    action: str


def parse_fuben(body: Mapping[str, Any]) -> FubenEvent:
    ev = gamelog_event(body)
    action = need_str(ev.data, "action", "body.data")
    if action not in ACTIONS:
        raise ValueError(f"body.data.action must be one of {ACTIONS}, got {action!r}")
    name = ev.data.get("fuben_name")
    return FubenEvent(ev.server, ev.uid, ev.ts, need_str(ev.data, "fuben_id", "body.data"),
                      name if isinstance(name, str) else "", action)


@dataclass
class CopySums:
    enters: int = 0
    finishes: int = 0
    fuben_name: str = ""
    users: set[str] = field(default_factory=set)


class FubenSums(Keyed[tuple[str, str, str, int, str], CopySums]):
    """Sums per (game, area, plat, day, fuben) since the last take."""

    def __init__(self) -> None:
        super().__init__(CopySums)

    def add(self, e: FubenEvent, tz: str) -> None:
        s = self.slot((*e.server, day_start(e.ts, tz), e.fuben))
        if e.action == "enter":
            s.enters += 1
        else:
            s.finishes += 1
        s.fuben_name = e.fuben_name or s.fuben_name
        s.users.add(e.uid)


COLLECTIONS = [
    Collection("gamecopy", ("game", "area", "plat", "ts", "fuben"), {
        "ts": "start of the day in the game's zone",
        "fuben": "dungeon id (data.fuben_id)",
        "fuben_name": "dungeon name (latest seen)",
        "enters": "'enter' records",
        "finishes": "'finish' records",
        "users": "distinct users who entered or finished it (size of set 'fuben_day', sub = fuben)",
    }, userlist_set="fuben_day", userlist_sub="fuben", doc="one dungeon's traffic on one server on one day",
        writer="gamecopy"),
]


# -- bolt --------------------------------------------------------------------------------

class GameCopyBolt(Bolt):
    name = "gamecopy"
    topics = ["gamelog.fuben_logchange"]
    dedupe = True

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.sums = FubenSums()

    def process(self, tup: Tuple) -> None:
        e = parse_fuben(tup.body)
        self.sums.add(e, self.settings.tz_of(e.server.game))

    def flush(self, batch: Batch) -> None:
        for (game, area, plat, ts, fuben), s in sorted(self.sums.take().items()):
            key = {"game": game, "area": area, "plat": plat, "ts": ts, "fuben": fuben}
            batch.upsert("gamecopy", key, inc={"enters": s.enters, "finishes": s.finishes},
                         set={"fuben_name": s.fuben_name} if s.fuben_name else None)
            batch.add_members(MemberKey("fuben_day", game, area, plat, ts, fuben), s.users,
                              count_into=("gamecopy", key, "users"))
