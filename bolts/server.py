"""The server bolt: one document per server and day with its headline figures.

Input: the day bolts' state tuples ``login.day``, ``signup.day``, ``createrole.day``
(body {game, area, plat, ts, count, type}) and ``payorderuser.day`` (adds
pay_amount, pay_count). Each carries stored state, not a delta, so the bolt
writes every field with $max: counts only grow, so the order of arrival does not
matter and a replayed tuple changes nothing (no dedupe needed).
"""
from __future__ import annotations

from typing import Any, Mapping

from analytics.component import Bolt, Context
from analytics.schema import Collection
from analytics.store.base import Batch
from analytics.tuples import Tuple
from bolts.common import need_int, need_number, need_str, server_key

__all__ = ["FIELD_OF_TYPE", "server_fields", "ServerDays", "ServerBolt", "COLLECTIONS"]


# -- pure aggregation --------------------------------------------------------------------

#: Which server field a day state tuple's `count` goes to, by its `type`.
FIELD_OF_TYPE = {"login": "active", "signup": "reg", "createrole": "create_role", "payorderuser": "pay_user"}

DayKey = tuple[str, str, str, int]


def server_fields(body: Mapping[str, Any]) -> tuple[DayKey, dict[str, float]]:
    """(game, area, plat, day) and the server fields one day state tuple sets."""
    if not isinstance(body, dict):
        raise ValueError(f"day state body must be an object, got {type(body).__name__}")
    s = server_key(body)
    key = (s.game, s.area, s.plat, need_int(body, "ts"))
    kind = need_str(body, "type")
    if kind not in FIELD_OF_TYPE:
        raise ValueError(f"body.type must be one of {sorted(FIELD_OF_TYPE)}, got {kind!r}")
    fields: dict[str, float] = {FIELD_OF_TYPE[kind]: need_int(body, "count")}
    if kind == "payorderuser":
        fields["pay_count"] = need_int(body, "pay_count")
        fields["pay_amount"] = need_number(body, "pay_amount")
    return key, fields


class ServerDays:
    """Largest value per (server, day, field) since the last take."""

    def __init__(self) -> None:
        self._pending: dict[DayKey, dict[str, float]] = {}

    def add(self, body: Mapping[str, Any]) -> None:
        key, fields = server_fields(body)
        cur = self._pending.setdefault(key, {})
        for f, v in fields.items():
            if f not in cur or v > cur[f]:
                cur[f] = v

    def take(self) -> dict[DayKey, dict[str, float]]:
        pending, self._pending = self._pending, {}
        return pending


COLLECTIONS = [
    Collection("server", ("game", "area", "plat", "ts"), {
        "ts": "start of the day in the game's zone",
        "active": "distinct users who logged in that day (loginday.count)",
        "reg": "distinct users who signed up that day (signupday.count)",
        "create_role": "distinct users who created a role that day (createroleday.count)",
        "pay_user": "distinct payers that day (payorderuser.count)",
        "pay_count": "payments that day (payorderuser.pay_count)",
        "pay_amount": "amount paid that day (payorderuser.pay_amount; the seed's pay_amout)",
    }, doc="headline figures of one server on one day", writer="server"),
]


# -- bolt --------------------------------------------------------------------------------

class ServerBolt(Bolt):
    """Day state tuples -> server documents ($max per field)."""

    name = "server"
    topics = ["login.day", "signup.day", "createrole.day", "payorderuser.day"]

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.days = ServerDays()

    def process(self, tup: Tuple) -> None:
        self.days.add(tup.body)

    def flush(self, batch: Batch) -> None:
        for (game, area, plat, ts), fields in sorted(self.days.take().items()):
            batch.upsert("server", {"game": game, "area": area, "plat": plat, "ts": ts}, max=fields)
