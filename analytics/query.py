"""The query layer: validated reads of the stats for the CLI, the HTTP API and dashboards.

Filters come from users, so they are checked here against the collection
catalogue (analytics.schema) before they reach a store: only known collections,
only plain values, never a raw MongoDB operator. Documents come back with the
seed's field names and types, and with the seed's `userlist` rebuilt from the
membership sets when asked for.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from analytics.periods import zone
from analytics.schema import Collection, all_collections
from analytics.store.base import MemberKey, QueryError, Store

__all__ = ["query", "parse_time", "QueryError", "collections"]


def collections() -> dict[str, Collection]:
    """The queryable collections, by name."""
    return all_collections()


def parse_time(value: str | int | None, tz: str = "UTC") -> int | None:
    """Epoch seconds from an integer, 'YYYY-MM-DD' or an ISO datetime (naive ones in `tz`)."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            dt = datetime(d.year, d.month, d.day)
        else:
            dt = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"not a time: {text!r} (use epoch seconds, YYYY-MM-DD or an ISO datetime)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    return int(dt.timestamp())


def _plain(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple, set)):
        raise QueryError(f"{name} must be a plain value, not {type(value).__name__}")
    text = str(value)
    if text.startswith("$"):
        raise QueryError(f"{name} may not start with '$': {text!r}")
    return text


def query(store: Store, collection: str, *, game: str | None = None, area: str | None = None,
          plat: str | None = None, ts_from: int | None = None, ts_to: int | None = None,
          where: dict[str, Any] | None = None, limit: int | None = None,
          userlist: bool = False) -> list[dict[str, Any]]:
    """Documents of one collection, filtered by game/area/plat and ts_from <= ts < ts_to."""
    catalogue = collections()
    info = catalogue.get(collection)
    if info is None:
        raise QueryError(f"unknown collection {collection!r}; known: {', '.join(sorted(catalogue))}")
    filt: dict[str, Any] = {}
    for name, value in (("game", game), ("area", area), ("plat", plat)):
        v = _plain(name, value)
        if v is not None:
            filt[name] = v
    for name, value in (where or {}).items():
        if name not in info.key and name not in info.fields:
            raise QueryError(f"{collection} has no field {name!r}")
        filt[name] = _plain(name, value)
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise QueryError(f"limit must be a positive integer, not {limit!r}")
    docs = store.find(collection, filt or None, ts_from=ts_from, ts_to=ts_to, limit=limit)
    if userlist and info.userlist_set:
        for d in docs:
            key = MemberKey(info.userlist_set, d["game"], d["area"], d["plat"], d["ts"],
                            str(d.get(info.userlist_sub, "")) if info.userlist_sub else "")
            d["userlist"] = sorted(store.members(key))
    return docs
