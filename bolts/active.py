"""Active users per day, week and month: activeday, activeweek, activemonth (timer bolts).

One implementation parametrized by the period. For each (game, area, plat) and
period start (the local day; Monday 00:00; the 1st 00:00, in the game's zone):

* ac_user      distinct users who logged in during the period (login_day members; a week or
               month is the union of its day bitmaps, counted without decoding a uid);
* new_ac_user  users whose first login there falls in the period (userfirst.ts): the period's
               members less everyone in a login day before it, on bitmaps (TimerBolt.first_members);
* old_ac_user  the others (ac_user - new_ac_user), and both shares in percent.

The seed's example: 214 active = 109 new (50.93 %) + 105 old (49.07 %).
"""
from __future__ import annotations

from typing import Any, ClassVar, Iterable

from analytics.periods import next_period, period_start
from analytics.schema import Collection
from analytics.store.base import MemberKey
from bolts.timer import PeriodKey, SetCache, TimerBolt, rate

__all__ = ["ACTIVE_PERIODS", "active_figures", "period_bounds", "ActiveBolt", "ActiveDayBolt",
           "ActiveWeekBolt", "ActiveMonthBolt", "COLLECTIONS"]

#: The periods an active-user table exists for.
ACTIVE_PERIODS = ("day", "week", "month")


# -- pure ------------------------------------------------------------------------------

def active_figures(ac_user: int, new_ac_user: int) -> dict[str, int | float]:
    """The stored figures from the two counts (rates in percent, two decimals, 0 when nobody was active).

    >>> active_figures(214, 109)
    {'ac_user': 214, 'new_ac_user': 109, 'new_ac_rate': 50.93, 'old_ac_user': 105, 'old_ac_rate': 49.07}
    """
    old = ac_user - new_ac_user
    return {"ac_user": ac_user, "new_ac_user": new_ac_user, "new_ac_rate": rate(new_ac_user, ac_user),
            "old_ac_user": old, "old_ac_rate": rate(old, ac_user)}


def period_bounds(period: str, ts: int, tz: str) -> tuple[int, int]:
    """[start, next start) of the day/week/month containing ts, in zone tz."""
    if period not in ACTIVE_PERIODS:
        raise ValueError(f"unknown active period {period!r}; expected one of {ACTIVE_PERIODS}")
    start = period_start(period, ts, tz)
    return start, next_period(period, start, tz)


# -- bolts -----------------------------------------------------------------------------

_FIELDS = {
    "ac_user": "distinct users who logged in during the period",
    "new_ac_user": "users whose first login in this game/area/plat falls in the period",
    "new_ac_rate": "100 * new_ac_user / ac_user, two decimals (0 when ac_user is 0)",
    "old_ac_user": "ac_user - new_ac_user: active users who first logged in before the period",
    "old_ac_rate": "100 * old_ac_user / ac_user, two decimals (0 when ac_user is 0)",
}
_STARTS = {"day": "the local day's 00:00", "week": "Monday 00:00", "month": "the 1st, 00:00"}

COLLECTIONS = [
    Collection(f"active{p}", ("game", "area", "plat", "ts"),
               {"ts": f"period start: {_STARTS[p]} in the game's zone", **_FIELDS},
               doc=f"active users of one {p} of one game server (recomputed from login_day and userfirst)",
               writer=f"active{p}")
    for p in ACTIVE_PERIODS
]


class ActiveBolt(TimerBolt):
    """Recompute activeday/activeweek/activemonth for the periods that login.day marks dirty."""

    topics: ClassVar[list[str]] = ["login.day"]
    sources: ClassVar[dict[str, str]] = {"login.day": "login_day"}
    #: 'day', 'week' or 'month'.
    period: ClassVar[str] = "day"

    def dirtied(self, topic: str, day: int, tz: str) -> Iterable[int]:
        return (period_start(self.period, day, tz),)

    def current(self, now: int, tz: str) -> Iterable[int]:
        return (period_start(self.period, now, tz),)

    def compute(self, key: PeriodKey, tz: str, sets: SetCache) -> dict[str, Any] | None:
        start, end = period_bounds(self.period, key.ts, tz)
        if self.period == "day":
            days = sets.bitmap(MemberKey("login_day", key.game, key.area, key.plat, start))
        else:
            days = self.store.bitmap_between("login_day", key.game, key.area, key.plat, start, end, sub="")
        ac = len(days)
        first = self.first_members("userfirst", key, start, end, sets, days)
        new = len(self.uids("userfirst", key, end)) if first is None else len(first)
        if not ac and not new:
            return None  # nobody: no document (a dashboard reads a missing period as zeros)
        return active_figures(ac, new)


class ActiveDayBolt(ActiveBolt):
    name = "activeday"
    period = "day"
    collection = "activeday"


class ActiveWeekBolt(ActiveBolt):
    name = "activeweek"
    period = "week"
    collection = "activeweek"


class ActiveMonthBolt(ActiveBolt):
    name = "activemonth"
    period = "month"
    collection = "activemonth"
