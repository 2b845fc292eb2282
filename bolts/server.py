"""The server bolt: one document per server and day with its headline figures.

Input: the day bolts' state tuples ``login.day``, ``signup.day``, ``createrole.day``
(body {game, area, plat, ts, count, type}) and ``payorderuser.day`` (adds
pay_amount, pay_count). A tuple says only that a server-day changed: in its flush
the bolt reads the stored documents of all four inputs for every touched day
(loginday, signupday, createroleday, payorderuser) and writes the whole row, every
field, 0 where an input has no document. So any one input's tuple gives the exact
row, whichever sources a replay or a live run carries (a replay of the payment
log alone still writes `active` from the stored loginday). Fields are written with
$max: the inputs only grow, so two writers or a late, older read cannot lower a
figure, and a replayed tuple changes nothing (no dedupe needed).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from analytics.aggregate import Keyed
from analytics.component import Bolt, Context
from analytics.schema import Collection
from analytics.store.base import Batch
from analytics.tuples import Tuple
from bolts.common import ServerKey, need_int, need_number, need_str, server_key

__all__ = ["FIELD_OF_TYPE", "SOURCES", "server_fields", "server_row", "ServerDays", "ServerBolt", "COLLECTIONS"]


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


#: Input collection -> {its field: the server field it gives}.
SOURCES: dict[str, dict[str, str]] = {
    "loginday": {"count": "active"},
    "signupday": {"count": "reg"},
    "createroleday": {"count": "create_role"},
    "payorderuser": {"count": "pay_user", "pay_count": "pay_count", "pay_amount": "pay_amount"},
}

#: Every field of a server document besides its key.
ROW_FIELDS = tuple(f for fields in SOURCES.values() for f in fields.values())


def server_row(stored: Mapping[str, Mapping[str, Any] | None], floor: Mapping[str, float]) -> dict[str, float]:
    """The whole row of one server-day: per field the stored input's value, 0 where there is none.

    `stored`: input collection -> its document for the day (None: none); `floor`: the
    values the day's state tuples carried (a store read after they were sent is never
    lower; the larger wins, so a bolt with no stored inputs still writes them).
    """
    row = {f: floor.get(f, 0) for f in ROW_FIELDS}
    for collection, fields in SOURCES.items():
        doc = stored.get(collection) or {}
        for src, dst in fields.items():
            v = doc.get(src)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > row[dst]:
                row[dst] = v
    return row


class ServerDays(Keyed[DayKey, dict[str, float]]):
    """Largest value per (server, day, field) since the last take."""

    def __init__(self) -> None:
        super().__init__(dict)

    def add(self, body: Mapping[str, Any]) -> None:
        self.merge(*server_fields(body))

    def merge(self, key: DayKey, fields: Mapping[str, float]) -> None:
        """Per field the larger value (put_back of a failed flush's days stays exact)."""
        cur = self.slot(key)
        for f, v in fields.items():
            if f not in cur or v > cur[f]:
                cur[f] = v


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
    """Day state tuples -> server documents: each touched day's whole row, recomputed from the store."""

    name = "server"
    topics = ["login.day", "signup.day", "createrole.day", "payorderuser.day"]

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.days = ServerDays()

    def process(self, tup: Tuple) -> None:
        self.days.add(tup.body)

    def flush(self, batch: Batch) -> None:
        touched = self.days.take()
        if not touched:
            return
        try:
            stored = self._stored(touched)
        except Exception:
            self.days.put_back(touched)   # a failed store read: keep it for the next flush
            raise
        for key, floor in sorted(touched.items()):
            game, area, plat, ts = key
            row = server_row({c: stored[c].get(key) for c in SOURCES}, floor)
            batch.upsert("server", {"game": game, "area": area, "plat": plat, "ts": ts}, max=row)

    def _stored(self, days: Iterable[DayKey]) -> dict[str, dict[DayKey, dict[str, Any]]]:
        """Input collection -> {touched day: its stored document}: one read per input and server."""
        by_server: dict[ServerKey, list[int]] = {}
        for game, area, plat, ts in days:
            by_server.setdefault(ServerKey(game, area, plat), []).append(ts)
        out: dict[str, dict[DayKey, dict[str, Any]]] = {c: {} for c in SOURCES}
        for server, starts in sorted(by_server.items()):
            wanted = set(starts)
            for collection in SOURCES:
                for d in self.store.find(collection, server._asdict(), ts_from=min(starts), ts_to=max(starts) + 1,
                                         sort=()):
                    if d.get("ts") in wanted:
                        out[collection][(*server, d["ts"])] = d
        return out
