"""Record validation, shared by the spouts, the HTTP intake and the bolts (pure, no I/O).

Two faces of one job, kept side by side so they do not drift apart:

* at the edge (spouts, the intake): `parse_object` a raw line, `require` a field,
  `as_str`/`as_int`/`as_number`/`as_epoch` a value. They raise `Invalid` whose
  message is the dead-letter reason, "kind: detail" (``type: ts must be an
  integer epoch, got 'x'``);
* inside (bolts, on tuple bodies the spouts already validated): `need_str`,
  `need_int`, `need_number` read one field of a body and raise ValueError naming
  the field and the value seen; the Bolt base class logs, counts and
  dead-letters it. Their fast paths are exact type checks: they run per tuple.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Mapping

import orjson

__all__ = ["Invalid", "parse_object", "require", "as_str", "as_int", "as_number", "as_epoch",
           "need_str", "need_int", "need_number"]


class Invalid(ValueError):
    """A record failed validation; the message is the dead-letter reason ("kind: detail")."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- at the edge ---------------------------------------------------------------------------

def parse_object(raw: bytes) -> dict[str, Any]:
    """One JSON object from a raw line."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise Invalid(f"encoding: not UTF-8 (byte 0x{raw[uexc.start]:02x} at offset {uexc.start})") from None
        raise Invalid(f"json: {exc}") from None
    if not isinstance(obj, dict):
        raise Invalid(f"type: record must be a JSON object, got {type(obj).__name__}")
    return obj


def require(obj: dict[str, Any], key: str, path: str | None = None) -> Any:
    """obj[key], which must be present and not null."""
    if key not in obj or obj[key] is None:
        raise Invalid(f"missing: {path or key}")
    return obj[key]


def as_str(value: Any, path: str, *, ints: bool = False) -> str:
    """A non-empty string (ints accepted and converted when `ints`)."""
    if ints and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise Invalid(f"type: {path} must be a {'string or integer' if ints else 'string'}, got {_show(value)}")
    if not value.strip():
        raise Invalid(f"type: {path} must not be empty")
    return value


def as_int(value: Any, path: str, *, minimum: int | None = None) -> int:
    """An int (an integral float is accepted), at least `minimum` when given."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"type: {path} must be an integer, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise Invalid(f"type: {path} must be >= {minimum}, got {value}")
    return value


def as_number(value: Any, path: str, *, minimum: float | None = None) -> float:
    """A finite number as a float, at least `minimum` when given."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise Invalid(f"type: {path} must be a number, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise Invalid(f"type: {path} must be >= {minimum:g}, got {value}")
    return float(value)


def as_epoch(value: Any, path: str, *, now: float, max_future: int, min_ts: int) -> int:
    """An event timestamp: integer epoch seconds, not before `min_ts`, not far in the future."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"type: {path} must be an integer epoch, got {_show(value)}")
    if value > now + max_future:
        raise Invalid(f"time: {path} {value} is more than {max_future / 3600:g} h in the future "
                      f"(now {int(now)})")
    if value < min_ts:
        day = datetime.fromtimestamp(min_ts, timezone.utc).strftime("%Y-%m-%d")
        raise Invalid(f"time: {path} {value} is before {min_ts} ({day})")
    return value


# -- inside: a field of a tuple body ---------------------------------------------------------

def need_str(d: Mapping[str, Any], name: str, where: str = "body") -> str:
    """d[name] as a non-empty string (ints are accepted and converted: ids often arrive as numbers)."""
    v = d.get(name) if isinstance(d, dict) else None
    if type(v) is str and v:  # the common case first: exact type checks are cheap
        return v
    if type(v) is int:
        return str(v)
    raise ValueError(f"{where}.{name} must be a non-empty string, got {v!r}")


def need_int(d: Mapping[str, Any], name: str, where: str = "body") -> int:
    """d[name] as an int (an integral float is accepted)."""
    v = d.get(name) if isinstance(d, dict) else None
    if type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    raise ValueError(f"{where}.{name} must be an integer, got {v!r}")


def need_number(d: Mapping[str, Any], name: str, where: str = "body") -> int | float:
    """d[name] as an int or float (not a bool, not NaN)."""
    v = d.get(name) if isinstance(d, dict) else None
    if (type(v) is int or type(v) is float) and v == v:
        return v
    raise ValueError(f"{where}.{name} must be a number, got {v!r}")
