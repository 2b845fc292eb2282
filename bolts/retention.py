"""Login retention of each day's new roles: loginretention (timer bolt).

For each (game, area, plat) and cohort day D (local day start in the game's zone):
cohort = users whose first role creation is on D (rolefirst.ts == D: createrole_day D less
everyone in an earlier createrole_day, on bitmaps), and for
k in 1..7, 14, 30: d<k> = how many of them log in on day D+k (login_day members),
d<k>_rate = its share of the cohort in percent. A login on day L changes the
cohorts L-1..L-7, L-14, L-30; a createrole.day for D changes cohort D.
"""
from __future__ import annotations

from typing import AbstractSet, Any, ClassVar, Iterable, Mapping

from analytics.periods import add_days, day_start
from analytics.schema import Collection
from analytics.store.base import MemberKey
from bolts.timer import (RETENTION_OFFSETS, PeriodKey, SetCache, TimerBolt, cohorts_touched, later_days,
                         retention_counts)

__all__ = ["retention_figures", "retention_dirtied", "LoginRetentionBolt", "COLLECTIONS"]


# -- pure ------------------------------------------------------------------------------

def retention_figures(cohort: AbstractSet[Any], later: Mapping[int, AbstractSet[Any]],
                      size: int | None = None) -> dict[str, int | float]:
    """{cohort, d1, d1_rate, ..., d30, d30_rate}; later[k] = who logged in on cohort day + k.

    Sets or bitmaps; `size` is the cohort's size when `cohort` leaves out users in no set.
    """
    n = len(cohort) if size is None else size
    return {"cohort": n, **retention_counts(cohort, later, size=n)}


def retention_dirtied(topic: str, day: int, tz: str) -> list[int]:
    """Cohort days a state tuple for `day` changes: D itself for new roles, D-k for logins."""
    if topic.startswith("createrole."):
        return [day]
    return cohorts_touched(day, tz)


# -- bolt ------------------------------------------------------------------------------

COLLECTIONS = [
    Collection("loginretention", ("game", "area", "plat", "ts"), {
        "ts": "cohort day D: the local day's 00:00 in the game's zone",
        "cohort": "users whose first role creation in this game/area/plat is on D (rolefirst.ts == D)",
        **{f"d{k}": f"cohort users who log in on day D+{k}" for k in RETENTION_OFFSETS},
        **{f"d{k}_rate": f"100 * d{k} / cohort, two decimals (0 when the cohort is empty)"
           for k in RETENTION_OFFSETS},
    }, doc="login retention of one day's new roles on one game server (recomputed from rolefirst and login_day)",
        writer="loginretention"),
]


class LoginRetentionBolt(TimerBolt):
    """Recompute loginretention for the cohorts that login.day and createrole.day mark dirty."""

    name = "loginretention"
    topics: ClassVar[list[str]] = ["login.day", "createrole.day"]
    sources: ClassVar[dict[str, str]] = {"login.day": "login_day", "createrole.day": "createrole_day"}
    collection = "loginretention"

    def dirtied(self, topic: str, day: int, tz: str) -> Iterable[int]:
        return retention_dirtied(topic, day, tz)

    def current(self, now: int, tz: str) -> Iterable[int]:
        today = day_start(now, tz)
        return [today, *cohorts_touched(today, tz)]

    def compute(self, key: PeriodKey, tz: str, sets: SetCache) -> dict[str, Any] | None:
        cohort = self.first_members("rolefirst", key, key.ts, add_days(key.ts, 1, tz), sets,
                                    sets.bitmap(MemberKey("createrole_day", key.game, key.area, key.plat, key.ts)))
        size = None
        if cohort is None:      # first-day documents of an older version: through the uids
            uids = self.uids("rolefirst", key, add_days(key.ts, 1, tz))
            cohort, size = self.uid_bitmap(key, uids), len(uids)
        if not (cohort if size is None else size):
            return None  # no new roles that day: no document
        later = {k: sets.bitmap(MemberKey("login_day", key.game, key.area, key.plat, day))
                 for k, day in later_days(key.ts, tz).items()}
        return retention_figures(cohort, later, size=size)
