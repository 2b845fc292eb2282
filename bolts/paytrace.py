"""Payers of each day and the payment retention of its first-time payers: paytraceday (timer bolt).

For each (game, area, plat) and day D (local day start in the game's zone):
pay_user = payers of D (pay_day members); new_pay_user = those whose first pay
day (userpay.ts) is D; old_pay_user = the rest; and for k in 1..7, 14, 30:
d<k> = how many of D's first-time payers pay again on D+k, d<k>_rate = its share
of new_pay_user in percent. A payorderuser.day for P changes D = P and D = P-k.
"""
from __future__ import annotations

from typing import AbstractSet, Any, ClassVar, Iterable, Mapping

from analytics.periods import add_days, day_start
from analytics.schema import Collection
from analytics.store.base import MemberKey
from bolts.timer import (RETENTION_OFFSETS, PeriodKey, SetCache, TimerBolt, cohorts_touched, later_days,
                         retention_counts)

__all__ = ["paytrace_figures", "paytrace_dirtied", "PayTraceDayBolt", "COLLECTIONS"]


# -- pure ------------------------------------------------------------------------------

def paytrace_figures(payers: AbstractSet[Any], first_payers: AbstractSet[Any],
                     later: Mapping[int, AbstractSet[Any]]) -> dict[str, int | float]:
    """The stored figures of day D.

    payers: who paid on D; first_payers: whose first pay day is D (userpay.ts);
    later[k]: who paid on D+k. New payers are payers of D whose first pay day
    is D (a first-pay record without a payment on D is not counted); the
    retention cohort is those new payers. Sets or bitmaps (all of one kind).
    """
    new = payers & first_payers
    return {"pay_user": len(payers), "new_pay_user": len(new), "old_pay_user": len(payers) - len(new),
            **retention_counts(new, later)}


def paytrace_dirtied(day: int, tz: str) -> list[int]:
    """Days whose figures a payment on `day` changes: the day itself and its retention cohorts."""
    return [*cohorts_touched(day, tz), day]


# -- bolt ------------------------------------------------------------------------------

COLLECTIONS = [
    Collection("paytraceday", ("game", "area", "plat", "ts"), {
        "ts": "day D: the local day's 00:00 in the game's zone",
        "pay_user": "distinct users who paid on D (pay_day members)",
        "new_pay_user": "payers of D whose first pay day (userpay.ts) is D",
        "old_pay_user": "pay_user - new_pay_user: payers of D who had paid before",
        **{f"d{k}": f"of D's first-time payers, how many pay on day D+{k}" for k in RETENTION_OFFSETS},
        **{f"d{k}_rate": f"100 * d{k} / new_pay_user, two decimals (0 when there are none)"
           for k in RETENTION_OFFSETS},
    }, doc="payers of one day and the payment retention of its first-time payers on one game server "
           "(recomputed from pay_day and userpay)", writer="paytraceday"),
]


class PayTraceDayBolt(TimerBolt):
    """Recompute paytraceday for the days that payorderuser.day marks dirty."""

    name = "paytraceday"
    topics: ClassVar[list[str]] = ["payorderuser.day"]
    sources: ClassVar[dict[str, str]] = {"payorderuser.day": "pay_day"}
    collection = "paytraceday"

    def dirtied(self, topic: str, day: int, tz: str) -> Iterable[int]:
        return paytrace_dirtied(day, tz)

    def current(self, now: int, tz: str) -> Iterable[int]:
        return paytrace_dirtied(day_start(now, tz), tz)

    def compute(self, key: PeriodKey, tz: str, sets: SetCache) -> dict[str, Any] | None:
        payers = sets.bitmap(MemberKey("pay_day", key.game, key.area, key.plat, key.ts))
        if not payers:
            return None  # nobody paid that day: no document
        first = self.uid_bitmap(key, self.uids("userpay", key, add_days(key.ts, 1, tz)))
        later = {}
        if payers.intersection_cardinality(first):
            later = {k: sets.bitmap(MemberKey("pay_day", key.game, key.area, key.plat, day))
                     for k, day in later_days(key.ts, tz).items()}
        return paytrace_figures(payers, first, later)
