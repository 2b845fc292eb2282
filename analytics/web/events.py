"""HTTP intake events: validation and the mapping to gamelog bodies (pure, no I/O).

Two shapes are accepted (docs/http.md):

* gamelog-compatible: ``{game, area, plat, uid, ts, code, data?}``, published as it is;
* the event-save shape: ``{user_id, session_id, app_id, type, event_name, event_time,
  page, country, region, city}``, mapped field by field (EVENT_SAVE_MAP):
  app_id -> game, region -> area, type -> plat, user_id -> uid, event_name -> code,
  event_time -> ts (milliseconds when > 1e11, truncated to whole seconds); the other
  fields (session_id, page, country, city, and any extra ones) go into ``data``.

Either way the result is the body the gamelog spout publishes, on topic
``gamelog.<code>`` for the codes in GAMELOG_CODES; the tuple id is
``record_id(canonical(event))`` of the event as received, so a client retry of
the same event has the same id and is deduplicated downstream.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from analytics.records import Invalid, as_epoch, as_str, require
from analytics.schema import GAMELOG_CODES
from analytics.sources import canonical
from analytics.tuples import record_id

__all__ = ["Limits", "Accepted", "EVENT_SAVE_MAP", "EVENT_SAVE_FIELDS", "GAMELOG_FIELDS", "to_body",
           "validate", "from_query", "parse_batch", "check_shape", "is_int64", "INT64_MIN", "INT64_MAX", "Invalid"]

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_INT = re.compile(r"-?[0-9]{1,19}")   # ASCII digits only: str.isdigit() also takes '²' and '٣'

#: Event-save field -> gamelog body field.
EVENT_SAVE_MAP: dict[str, str] = {"app_id": "game", "region": "area", "type": "plat", "user_id": "uid",
                                  "event_name": "code", "event_time": "ts"}
#: Every field the event-save shape requires.
EVENT_SAVE_FIELDS = ("user_id", "session_id", "app_id", "type", "event_name", "event_time", "page",
                     "country", "region", "city")
#: The gamelog-compatible shape's fields (data optional).
GAMELOG_FIELDS = ("game", "area", "plat", "uid", "ts", "code", "data")


@dataclass(frozen=True)
class Limits:
    """Validation limits (the [http] table's keys of the same names override them)."""
    #: Longest accepted string field (game, area, uid, code, ...), in characters.
    max_field_chars: int = 256
    #: Largest accepted `data` object, as canonical JSON bytes.
    max_data_bytes: int = 16384
    #: Events more than this many seconds in the future are rejected.
    max_future_seconds: int = 86400
    #: Events before this epoch (2000-01-01) are rejected.
    min_ts: int = 946684800
    #: Deepest accepted nesting of objects and arrays in one event (the event itself is depth 1).
    max_depth: int = 32


def is_int64(text: str) -> bool:
    """Whether `text` is a decimal integer of ASCII digits within the signed 64-bit range."""
    return bool(_INT.fullmatch(text)) and INT64_MIN <= int(text) <= INT64_MAX


def check_shape(value: Any, max_depth: int, what: str = "event") -> None:
    """Raise Invalid if `value` nests deeper than `max_depth` or holds an integer outside 64 bits.

    Iterative, so any depth the JSON parser accepts is checked without recursion;
    deeper events cannot be written down as canonical JSON, and the store cannot
    hold wider integers.
    """
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > max_depth:
                raise Invalid(f"depth: {what} nests objects or arrays deeper than {max_depth} levels")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
        elif isinstance(v, int) and not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX:
            raise Invalid(f"range: {what} holds the integer {str(v)[:30]}..., outside the 64-bit range")


@dataclass(frozen=True)
class Accepted:
    """One validated event: the raw record for the disk log, its id, topic and body."""
    raw: bytes
    id: str
    topic: str
    body: dict[str, Any]


def _short(value: str, path: str, limits: Limits) -> str:
    if len(value) > limits.max_field_chars:
        raise Invalid(f"size: {path} has {len(value)} characters, more than {limits.max_field_chars}")
    return value


def _ts(value: Any, path: str, now: float, limits: Limits, *, millis: bool) -> int:
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        value = int(value)
    if millis and isinstance(value, int) and not isinstance(value, bool) and value > 10 ** 11:
        value //= 1000
    return as_epoch(value, path, now=now, max_future=limits.max_future_seconds, min_ts=limits.min_ts)


def to_body(event: Mapping[str, Any], now: float, limits: Limits = Limits()) -> dict[str, Any]:
    """The gamelog body of one event (either shape); raises Invalid with the reason."""
    if not isinstance(event, Mapping):
        raise Invalid(f"type: an event must be a JSON object, got {type(event).__name__}")
    check_shape(event, limits.max_depth)
    if "app_id" in event or "event_name" in event:
        for f in EVENT_SAVE_FIELDS:
            require(event, f)
        out: dict[str, Any] = {}
        for src, dst in EVENT_SAVE_MAP.items():
            if dst == "ts":
                out["ts"] = _ts(event[src], src, now, limits, millis=True)
            else:
                out[dst] = _short(as_str(event[src], src, ints=src in ("user_id", "region", "type")), src, limits)
        data = {k: v for k, v in event.items() if k not in EVENT_SAVE_MAP}
        for f in ("session_id", "page", "country", "city"):
            _short(as_str(data[f], f, ints=f == "session_id"), f, limits)
    else:
        game = _short(as_str(require(event, "game"), "game"), "game", limits)
        area = _short(as_str(require(event, "area"), "area", ints=True), "area", limits)
        plat = _short(as_str(require(event, "plat"), "plat", ints=True), "plat", limits)
        uid = _short(as_str(require(event, "uid"), "uid", ints=True), "uid", limits)
        code = _short(as_str(require(event, "code"), "code"), "code", limits)
        ts = _ts(require(event, "ts"), "ts", now, limits, millis=False)
        unknown = sorted(set(event) - set(GAMELOG_FIELDS))
        if unknown:
            raise Invalid(f"field: unknown field(s) {', '.join(unknown)} (gamelog shape: "
                          f"{', '.join(GAMELOG_FIELDS)}; put extra values in data)")
        data = event.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise Invalid(f"type: data must be an object, got {type(data).__name__}")
        out = {"game": game, "area": str(area), "plat": str(plat), "uid": str(uid), "ts": ts, "code": code}
    size = len(canonical(data))
    if size > limits.max_data_bytes:
        raise Invalid(f"size: data is {size} bytes of JSON, more than {limits.max_data_bytes}")
    if out["code"] not in GAMELOG_CODES:
        raise Invalid(f"code: unknown event code {out['code']!r}; known: {', '.join(GAMELOG_CODES)}")
    out["area"], out["plat"], out["uid"] = str(out["area"]), str(out["plat"]), str(out["uid"])
    out["data"] = data
    return {k: out[k] for k in GAMELOG_FIELDS}


def validate(event: Any, now: float, limits: Limits = Limits()) -> Accepted:
    """Validate one event and compute its raw record, stable id and topic."""
    body = to_body(event, now, limits)
    raw = canonical(event)
    return Accepted(raw, record_id(raw), f"gamelog.{body['code']}", body)


def from_query(params: Mapping[str, Any], max_depth: int = Limits.max_depth) -> dict[str, Any]:
    """The event a beacon's query string stands for (values are strings).

    ts/event_time of ASCII digits within 64 bits become integers (anything else
    stays a string, which validation rejects); a ``data`` parameter is a JSON
    object; in the gamelog shape, parameters that are not gamelog fields go into
    ``data`` (so ``?game=dl&...&page=home`` works); a repeated parameter is an error.
    """
    event: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, list):
            raise Invalid(f"query: parameter {k!r} given {len(v)} times")
        event[k] = v
    for k in ("ts", "event_time"):
        v = event.get(k)
        if isinstance(v, str) and is_int64(v.strip()):
            event[k] = int(v.strip())
    if isinstance(event.get("data"), str):
        try:
            event["data"] = orjson.loads(event["data"])
        except orjson.JSONDecodeError as exc:
            raise Invalid(f"json: data parameter: {exc}") from None
        check_shape(event["data"], max_depth - 1, "data")
    if "app_id" not in event and "event_name" not in event:
        extra = {k: event.pop(k) for k in list(event) if k not in GAMELOG_FIELDS}
        if extra:
            data = event.setdefault("data", {})
            if not isinstance(data, dict):
                raise Invalid(f"type: data must be an object, got {type(data).__name__}")
            data.update(extra)
    return event


def parse_batch(body: bytes, ndjson: bool, max_depth: int = Limits.max_depth) -> list[Any] | dict[str, Any]:
    """A request body: one object, a JSON array, or newline-delimited JSON (ndjson=True).

    Returns a dict for a single event and a list for a batch. Raises Invalid when
    the body is not JSON or nests deeper than `max_depth` (an array of events adds
    a level); an NDJSON line that is not JSON, or too deep, stays in the list as
    an Invalid so its index can be reported.
    """
    if ndjson:
        items: list[Any] = []
        for n, line in enumerate(body.splitlines()):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                check_shape(item, max_depth, f"line {n + 1}")
                items.append(item)
            except orjson.JSONDecodeError as exc:
                items.append(Invalid(f"json: line {n + 1}: {exc}"))
            except Invalid as exc:
                items.append(exc)
        return items
    if not body.strip():
        raise Invalid("json: empty body (send one JSON event, a JSON array, or NDJSON)")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"json: {exc}") from None
    if isinstance(obj, (dict, list)):
        check_shape(obj, max_depth + isinstance(obj, list), "body")
        return obj
    raise Invalid(f"type: body must be a JSON object or array, got {type(obj).__name__}")
