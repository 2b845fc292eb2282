"""The read API over the stats store: every read goes through analytics.query.

    GET /api/v1/stats/{collection}?game=&area=&plat=&from=&to=&limit=&userlist=
    GET /api/v1/collections
    GET /api/v1/games                 (games, their zones and areas: the dashboard's selector)
    GET /api/v1/crm/user-stat/total-user?game=&area=&plat=
    GET|POST /api/v1/crm/daily-stat/active-user?date=YYYY-MM-DD&game=&area=&plat=

Parameters are checked here (known names only, one value each, no brackets)
and again by the query layer ('$' values, unknown collections): a bad one is a
400 with {"error": "..."}, never a raw filter handed to the store.
"""
from __future__ import annotations

from datetime import date as Date
from typing import Any, Mapping

import falcon
import orjson

from analytics.config import Settings
from analytics.query import QueryError, collections, parse_time, query
from analytics.store.base import Store
from analytics.store.bitmaps import BitMap
from analytics.web.events import is_int64
from analytics.web.inputs import int64, read_body

__all__ = ["StatsResource", "CollectionsResource", "GamesResource", "TotalUserResource", "ActiveUserResource", "bad_request",
           "request_params", "time_param"]

_STATS_PARAMS = {"game", "area", "plat", "from", "to", "limit", "userlist"}
_FILTER_PARAMS = {"game", "area", "plat"}


def bad_request(message: str) -> falcon.HTTPError:
    return falcon.HTTPError(falcon.HTTP_400, description=message)


def request_params(req: falcon.Request, allowed: set[str], extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The request's parameters: only `allowed` names, each once, plain strings."""
    raw: dict[str, Any] = {**req.params, **(extra or {})}
    out: dict[str, str] = {}
    for name, value in raw.items():
        if name not in allowed:
            raise bad_request(f"unknown parameter {name!r}; allowed: {', '.join(sorted(allowed))}")
        if isinstance(value, list):
            raise bad_request(f"parameter {name!r} given more than once")
        if isinstance(value, (dict, tuple, set)) or (value is not None and not isinstance(value, (str, int))):
            raise bad_request(f"parameter {name!r} must be a plain value")
        text = "" if value is None else str(value)
        if text.startswith("$"):
            raise bad_request(f"parameter {name!r} may not start with '$': {text!r}")
        out[name] = text
    return out


def time_param(name: str, value: str | None, tz: str) -> int | None:
    """A from/to parameter as epoch seconds: digits (ASCII, within 64 bits), YYYY-MM-DD or ISO; else a 400."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text.lstrip("-").isdigit() or text.lstrip("-").isdecimal():   # '²' and '٣' pass isdigit: check them here
        if not is_int64(text):
            shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
            raise bad_request(f"{name} must be epoch seconds of ASCII digits within 64 bits, YYYY-MM-DD or an ISO "
                              f"datetime, not {shown!r}")
        return int(text)
    try:
        return parse_time(text, tz)
    except QueryError as exc:
        raise bad_request(f"{name}: {exc}") from None
    except (ValueError, OverflowError, OSError):
        raise bad_request(f"{name}: not a time: {text[:40]!r} (use epoch seconds, YYYY-MM-DD or an ISO datetime)") \
            from None


def _filters(p: Mapping[str, str]) -> dict[str, str | None]:
    return {k: (p.get(k) or None) for k in _FILTER_PARAMS}


class StatsResource:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        p = request_params(req, _STATS_PARAMS)
        f = _filters(p)
        tz = self.settings.tz_of(f["game"]) if f["game"] else self.settings.default_tz
        limit = int64("limit", p["limit"], minimum=1) if p.get("limit") else None
        userlist = p.get("userlist", "").lower() in ("1", "true", "yes")
        ts_from, ts_to = time_param("from", p.get("from"), tz), time_param("to", p.get("to"), tz)
        try:
            docs = query(self.store, collection, **f, ts_from=ts_from, ts_to=ts_to, limit=limit, userlist=userlist)
        except QueryError as exc:
            raise bad_request(str(exc))
        resp.media = {"collection": collection, "count": len(docs), "docs": docs}


class CollectionsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"collections": {
            name: {"key": list(c.key), "fields": c.fields, "doc": c.doc, "writer": c.writer,
                   "userlist": bool(c.userlist_set)}
            for name, c in sorted(collections().items())}}


class GamesResource:
    """The games and areas the store knows (serverstarttime), with each game's time zone: the dashboard's selector."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        request_params(req, set())
        games: dict[str, set[str]] = {}
        names: dict[str, dict[str, str]] = {}
        for d in query(self.store, "serverstarttime"):
            games.setdefault(d["game"], set()).add(d["area"])
            # server_name_at is '<ts>\t<name>' (bolts/serverstarttime.py): the server's newest name
            name = str(d.get("server_name_at") or "").partition("\t")[2]
            if name:
                names.setdefault(d["game"], {})[d["area"]] = name
        resp.media = {"games": [{"game": g, "tz": self.settings.tz_of(g), "areas": sorted(a),
                                 "names": names.get(g, {}), "currency": self.settings.currency_of(g)}
                                for g, a in sorted(games.items())]}


class TotalUserResource:
    """Distinct users ever seen: distinct uids among the userfirst documents (first login per server)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        f = _filters(request_params(req, _FILTER_PARAMS))
        try:
            docs = query(self.store, "userfirst", **f)
        except QueryError as exc:
            raise bad_request(str(exc))
        resp.media = {"total_user": len({d["uid"] for d in docs})}


class ActiveUserResource:
    """Distinct users who logged in on one local day (the game's zone): the union of login_day sets."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    def on_get(self, req: falcon.Request, resp: falcon.Response, extra: Mapping[str, Any] | None = None) -> None:
        p = request_params(req, _FILTER_PARAMS | {"date"}, extra)
        text = p.get("date", "")
        try:
            day = Date.fromisoformat(text)
        except ValueError:
            raise bad_request(f"date must be YYYY-MM-DD, not {text!r}") from None
        f = _filters(p)
        starts: dict[str, int | None] = {}
        # Keys of login_day in a window wide enough for every zone; keep the ones on that local day.
        utc = parse_time(day.isoformat(), "UTC")
        lo, hi = utc - 86400, utc + 2 * 86400
        users: dict[str, BitMap] = {}     # per game: ids are per-game (uid_map), so unions are too
        for key in self.store.member_keys("login_day", game=f["game"], area=f["area"], plat=f["plat"],
                                          ts_from=lo, ts_to=hi):
            start = starts.get(key.game)
            if start is None:
                start = starts[key.game] = parse_time(day.isoformat(), self.settings.tz_of(key.game))
            if key.ts == start:
                users.setdefault(key.game, BitMap()).update(self.store.bitmap(key))
        if len(users) <= 1:
            distinct = sum(map(len, users.values()))
        else:   # the same uid in two games is one user, as before: decode, then union the strings
            distinct = len(set().union(*(self.store.decode(g, bm) for g, bm in users.items())))
        resp.media = {"distinct_user": distinct, "date": day.isoformat()}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        extra: dict[str, Any] = {}
        if (req.content_type or "").startswith("application/json"):
            body = read_body(req, 65536)
            if body.strip():
                try:
                    obj = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    raise bad_request(f"json: {exc}") from None
                if not isinstance(obj, dict):
                    raise bad_request("body must be a JSON object such as {\"date\": \"2015-01-08\"}")
                extra = obj
        elif (req.content_type or "").startswith("application/x-www-form-urlencoded"):
            form = falcon.uri.parse_query_string(read_body(req, 65536).decode("utf-8", "replace"))
            extra = form
        self.on_get(req, resp, extra)

