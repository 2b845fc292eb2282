"""The serverstarttime bolt: when each game server (game, area) was first seen.

Subscribes every gamelog topic ('gamelog.*'); per (game, area) keeps the $min of
the event ts, and the server's name (data.server_name) of its newest record that
carries one, as '<ts, 12 digits><TAB><name>' under $max: the newest name wins in any
order. $min and $max are idempotent and order-insensitive: no dedupe needed.
"""
from __future__ import annotations

from typing import Any, Mapping

from analytics.aggregate import Keyed
from analytics.component import Bolt, Context
from analytics.schema import Collection
from analytics.store.base import Batch
from analytics.tuples import Tuple
from bolts.common import need_int, need_str

__all__ = ["FirstSeen", "ServerStartTimeBolt", "COLLECTIONS", "named_at", "server_name"]


# -- pure aggregation --------------------------------------------------------------------

class FirstSeen(Keyed[tuple[str, str], int]):
    """Earliest event ts per (game, area) since the last take."""

    def __init__(self) -> None:
        super().__init__()
        self._names: dict[tuple[str, str], str] = {}

    def add(self, body: Mapping[str, Any]) -> None:
        if not isinstance(body, dict):
            raise ValueError(f"gamelog body must be an object, got {type(body).__name__}")
        key = (need_str(body, "game"), need_str(body, "area"))
        ts = need_int(body, "ts")
        self.keep_min(key, ts)
        data = body.get("data")
        name = data.get("server_name") if type(data) is dict else None
        if type(name) is str and name:
            stamped = named_at(ts, name)
            if stamped > self._names.get(key, ""):
                self._names[key] = stamped

    def take_names(self) -> dict[tuple[str, str], str]:
        """(game, area) -> named_at(ts, name) of the newest record naming the server, since the last take."""
        names, self._names = self._names, {}
        return names


def named_at(ts: int, name: str) -> str:
    """A name tagged with its record's time, so that $max keeps the newest: '<ts:012d>\t<name>'."""
    return f"{ts:012d}\t{name}"


def server_name(named: str | None) -> str:
    """The name of a stored server_name_at ('' when none)."""
    return (named or "").partition("\t")[2]


COLLECTIONS = [
    Collection("serverstarttime", ("game", "area"), {
        "area": "the game server (area id)",
        "ts": "earliest event ts seen in any gamelog record of the server ($min)",
        "server_name_at": "'<ts, 12 digits><TAB><data.server_name>' of the newest record naming the server "
                          "($max: the newest name, whatever the order; '' until one arrives)",
    }, doc="when one game server was first seen", writer="serverstarttime"),
]


# -- bolt --------------------------------------------------------------------------------

class ServerStartTimeBolt(Bolt):
    name = "serverstarttime"
    topics = ["gamelog.*"]

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.first = FirstSeen()

    def process(self, tup: Tuple) -> None:
        self.first.add(tup.body)

    def flush(self, batch: Batch) -> None:
        names = self.first.take_names()
        for (game, area), ts in sorted(self.first.take().items()):
            name = names.get((game, area))
            if name:
                batch.upsert("serverstarttime", {"game": game, "area": area}, min={"ts": ts},
                             max={"server_name_at": name})
            else:
                batch.upsert("serverstarttime", {"game": game, "area": area}, min={"ts": ts},
                             set_on_insert={"server_name_at": ""})
