"""Pure helpers the bolts share: gamelog bodies, server and period keys, small value types.

Field checks of tuple bodies (`need_str`, `need_int`, `need_number`) are the runtime's
(analytics/records.py, beside the spouts' validators); they are re-exported here.

No zmq, gevent, pymongo or store imports here: these run in unit tests as they are.
A body that lacks a field a bolt needs raises ValueError naming the field and the
value seen; the Bolt base class logs, counts and dead-letters it.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Sequence

from analytics.records import need_int, need_number, need_str

__all__ = ["ServerKey", "PeriodKey", "GamelogEvent", "gamelog_event", "gamelog_users", "need_str", "need_int", "need_number",
           "server_key", "RecentMembers", "NO_DATA"]


class ServerKey(NamedTuple):
    """Which game server a record belongs to."""
    game: str
    area: str
    plat: str


class PeriodKey(NamedTuple):
    """One stat document: (game, area, plat, period start)."""
    game: str
    area: str
    plat: str
    ts: int

    def doc_key(self) -> dict[str, Any]:
        return {"game": self.game, "area": self.area, "plat": self.plat, "ts": self.ts}


class GamelogEvent(NamedTuple):
    """The parts of a gamelog tuple body every gamelog bolt uses."""
    game: str
    area: str
    plat: str
    uid: str
    ts: int
    data: Mapping[str, Any]

    @property
    def server(self) -> ServerKey:
        return ServerKey(self.game, self.area, self.plat)


def server_key(body: Mapping[str, Any]) -> ServerKey:
    """(game, area, plat) of a body, validated."""
    return ServerKey(need_str(body, "game"), need_str(body, "area"), need_str(body, "plat"))


#: The `data` of a gamelog tuple that carries none (the spout leaves it out of login,
#: sign-up and create-role tuples: their bolts count users only).
NO_DATA: Mapping[str, Any] = MappingProxyType({})


def gamelog_event(body: Mapping[str, Any]) -> GamelogEvent:
    """Validate a gamelog tuple body {game, area, plat, uid, ts, code[, data]}."""
    if type(body) is dict:  # the spout's own shape: exact type checks only, no calls
        game, area, plat, uid, ts, data = (body.get("game"), body.get("area"), body.get("plat"), body.get("uid"),
                                           body.get("ts"), body.get("data", NO_DATA))
        if type(game) is str and type(area) is str and type(plat) is str and type(uid) is str \
                and game and area and plat and uid and type(ts) is int and (type(data) is dict or data is NO_DATA):
            return GamelogEvent(game, area, plat, uid, ts, data)
    if not isinstance(body, dict):
        raise ValueError(f"gamelog body must be an object, got {type(body).__name__}")
    data = body.get("data", NO_DATA)
    if not isinstance(data, dict) and data is not NO_DATA:
        raise ValueError(f"body.data must be an object, got {data!r}")
    return GamelogEvent(need_str(body, "game"), need_str(body, "area"), need_str(body, "plat"),
                        need_str(body, "uid"), need_int(body, "ts"), data)


def gamelog_users(body: Mapping[str, Any]) -> tuple[ServerKey, int, Sequence[str]]:
    """(server, ts, users) of a who-where-when tuple: one record's {uid}, or the gamelog
    spout's packed {uids: [...]} (the records of one server and 15-minute slot; ts the earliest)."""
    uids = body.get("uids") if type(body) is dict else None
    if uids is None:
        ev = gamelog_event(body)
        return ev.server, ev.ts, (ev.uid,)
    if type(uids) is not list or not uids or not all(type(u) is str and u for u in uids):
        raise ValueError(f"body.uids must be a non-empty list of user ids, got {uids!r:.80}")
    return server_key(body), need_int(body, "ts"), uids


class RecentMembers:
    """Members seen per (key, period start), remembering at most `keep` distinct period starts.

    Used to avoid repeating idempotent work (re-emitting a user already reported
    for an hour), never for exactness: a member of a forgotten period is simply
    "new" again. Eviction drops the oldest period start.
    """

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep!r}")
        self.keep = keep
        self._by_start: dict[int, dict[Any, set[str]]] = {}

    def add(self, key: Any, start: int, member: str) -> bool:
        """Remember member under (key, start). True if it was not remembered before."""
        per_key = self._by_start.get(start)
        if per_key is None:
            per_key = self._by_start[start] = {}
            while len(self._by_start) > self.keep:
                oldest = min(self._by_start)
                del self._by_start[oldest]
                if oldest == start:
                    return True  # older than anything remembered: new, and not worth keeping
        seen = per_key.get(key)
        if seen is None:
            per_key[key] = {member}
            return True
        if member in seen:
            return False
        seen.add(member)
        return True

    def __len__(self) -> int:
        return sum(len(s) for per_key in self._by_start.values() for s in per_key.values())
