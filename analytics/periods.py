"""Period arithmetic: the start of the hour, day, week and month of an event.

Pure functions, no clock: the event's own timestamp and the game's configured
IANA time zone decide the bucket (the seed's data is UTC+8, so day 1420646400
is 2015-01-08 00:00 +08:00). Weeks start on Monday, months on the 1st.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Callable
from zoneinfo import ZoneInfo

__all__ = ["hour_start", "day_start", "week_start", "month_start", "period_start", "period_function",
           "next_period", "add_days", "zone", "PERIODS"]

PERIODS = ("hour", "day", "week", "month")
_SLOT = 900  # every UTC offset in the tz database is a multiple of 15 minutes


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; raises ZoneInfoNotFoundError for a bad one."""
    return ZoneInfo(name)


def _local(ts: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ts, zone(tz))


def _at(local_naive: datetime, tz: str) -> int:
    """Epoch seconds of a naive local wall-clock time in zone tz."""
    return int(local_naive.replace(tzinfo=zone(tz)).timestamp())


@lru_cache(maxsize=1 << 16)
def _slot_starts(slot: int, tz: str) -> tuple[int, int]:
    local = _local(slot * _SLOT, tz).replace(tzinfo=None)
    hour = _at(local.replace(minute=0, second=0, microsecond=0), tz)
    day = _at(local.replace(hour=0, minute=0, second=0, microsecond=0), tz)
    return hour, day


def hour_start(ts: int, tz: str = "UTC") -> int:
    """Start of the event's local hour (right for half-hour zones too)."""
    return _slot_starts(int(ts) // _SLOT, tz)[0]


def day_start(ts: int, tz: str = "UTC") -> int:
    """Start of the event's local day, as epoch seconds."""
    return _slot_starts(int(ts) // _SLOT, tz)[1]


def week_start(ts: int, tz: str = "UTC") -> int:
    """Start of the event's local week (Monday 00:00)."""
    local = _local(day_start(ts, tz), tz).replace(tzinfo=None)
    return _at(local - timedelta(days=local.weekday()), tz)


def month_start(ts: int, tz: str = "UTC") -> int:
    """Start of the event's local month (the 1st, 00:00)."""
    local = _local(day_start(ts, tz), tz).replace(tzinfo=None)
    return _at(local.replace(day=1), tz)


def period_function(period: str) -> Callable[[int, str], int]:
    """The function giving the start of `period` ('hour', 'day', 'week', 'month'): look it up once."""
    try:
        return {"hour": hour_start, "day": day_start, "week": week_start, "month": month_start}[period]
    except KeyError:
        raise ValueError(f"unknown period {period!r}; expected one of {PERIODS}") from None


def period_start(period: str, ts: int, tz: str = "UTC") -> int:
    """Start of the `period` ('hour', 'day', 'week', 'month') containing ts."""
    return period_function(period)(ts, tz)


def add_days(day_ts: int, days: int, tz: str = "UTC") -> int:
    """The start of the local day `days` after the day starting at day_ts."""
    local = _local(day_ts, tz).replace(tzinfo=None)
    return _at(local + timedelta(days=days), tz)


def next_period(period: str, start: int, tz: str = "UTC") -> int:
    """The start of the period after the one starting at `start`."""
    if period == "hour":
        return start + 3600  # local hours start 3600 s apart, across DST changes too
    if period == "day":
        return add_days(start, 1, tz)
    if period == "week":
        return add_days(start, 7, tz)
    if period == "month":
        local = _local(start, tz).replace(tzinfo=None)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        return _at(local.replace(year=year, month=month), tz)
    raise ValueError(f"unknown period {period!r}; expected one of {PERIODS}")
