"""The serverstarttime bolt: when each game server (game, area) was first seen.

Subscribes every gamelog topic ('gamelog.*'); per (game, area) keeps the $min of
the event ts. $min is idempotent and order-insensitive: no dedupe needed.
"""
from __future__ import annotations

from typing import Any, Mapping

from analytics.aggregate import Keyed
from analytics.component import Bolt, Context
from analytics.schema import Collection
from analytics.store.base import Batch
from analytics.tuples import Tuple
from bolts.common import need_int, need_str

__all__ = ["FirstSeen", "ServerStartTimeBolt", "COLLECTIONS"]


# -- pure aggregation --------------------------------------------------------------------

class FirstSeen(Keyed[tuple[str, str], int]):
    """Earliest event ts per (game, area) since the last take."""

    def add(self, body: Mapping[str, Any]) -> None:
        if not isinstance(body, dict):
            raise ValueError(f"gamelog body must be an object, got {type(body).__name__}")
        key = (need_str(body, "game"), need_str(body, "area"))
        ts = need_int(body, "ts")
        self.keep_min(key, ts)


COLLECTIONS = [
    Collection("serverstarttime", ("game", "area"), {
        "area": "the game server (area id)",
        "ts": "earliest event ts seen in any gamelog record of the server ($min)",
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
        for (game, area), ts in sorted(self.first.take().items()):
            batch.upsert("serverstarttime", {"game": game, "area": area}, min={"ts": ts})
