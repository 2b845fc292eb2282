"""Per-cohort figures that need a per-user join: lifetime value (cohortltv) and the funnel (funnelday).

Both are timer bolts: they recompute a cohort day from the store when a state
tuple makes it stale, and write it with $set, so ticks, replays and restarts
give the same documents (docs/timers.md).

cohortltv, for each (game, area, plat) and cohort day D (local day start in the
game's zone): cohort = users whose first role creation is on D (rolefirst.ts ==
D, the cohorts of loginretention), and for k in 1, 7, 14, 30: amount_d<k> = what
those users paid on days D..D+k (payorderdetail amounts), payers_d<k> = how many
of them paid on those days, ltv_d<k> = amount_d<k> / cohort. A payment on day P
changes the cohorts P-30..P; a createrole.day for D changes cohort D.

funnelday, for each (game, area, plat) and sign-up day D: signup = users who
signed up on D (signup_day), role = those of them who created a role on D
(createrole_day), next_day_login = those of them who logged in on D+1
(login_day), first_payment = those of them who paid on D..D+30 (payorderdetail),
each step a subset of the one before, with its share of the step before.

Why stored: the joins read the cohort's users against 31 days of payments; a
dashboard summing cohorts over servers must not repeat that on page load.
"""
from __future__ import annotations

from functools import lru_cache
from typing import AbstractSet as Set, Any, ClassVar, Iterable, Mapping

from pyroaring import BitMap

from analytics.measures import LTV_OFFSETS, money_ratio, money_sum, rate
from analytics.periods import add_days, day_start
from analytics.schema import Collection
from analytics.store.base import MemberKey, Store
from bolts.timer import PeriodKey, SetCache, TimerBolt

__all__ = ["LTV_OFFSETS", "PAY_WINDOW_DAYS", "ltv_figures", "funnel_figures", "pay_window_cohorts",
           "PaymentDays", "CohortLtvBolt", "FunnelDayBolt", "COLLECTIONS"]

#: The last day after the cohort day whose payments count (LTV D30, the funnel's payment step).
PAY_WINDOW_DAYS = 30

#: day start -> {uid: amount paid that day}.
DayAmounts = Mapping[int, Mapping[str, float]]


# -- pure ------------------------------------------------------------------------------

def ltv_figures(cohort: set[str], paid: DayAmounts, day_ends: Mapping[int, int]) -> dict[str, int | float]:
    """{cohort, amount_d<k>, payers_d<k>, ltv_d<k>} for k in LTV_OFFSETS.

    paid: what each user paid per day (days from the cohort day on); day_ends[k]:
    the start of the day after D+k (payments on days before it count for k).
    """
    n = len(cohort)
    out: dict[str, int | float] = {"cohort": n}
    for k in LTV_OFFSETS:
        end = day_ends[k]
        amounts, payers = [], set()
        for day, users in paid.items():
            if day < end:
                for uid, amount in users.items():
                    if uid in cohort:
                        amounts.append(amount)
                        payers.add(uid)
        total = money_sum(amounts)
        out[f"amount_d{k}"] = total
        out[f"payers_d{k}"] = len(payers)
        out[f"ltv_d{k}"] = money_ratio(total, n)
    return out


def funnel_figures(signup: Set, role: Set, next_day: Set, payers: Set) -> dict[str, int | float]:
    """The funnel's counts (each step within the one before) and step rates in percent.

    The four are sets of one kind: Python sets of uids, or member bitmaps of integer ids.
    signup: who signed up on D; role: who created a role on D; next_day: who
    logged in on D+1; payers: who paid on D..D+30.
    """
    r = signup & role
    n = r & next_day
    p = n & payers
    return {"signup": len(signup), "role": len(r), "next_day_login": len(n), "first_payment": len(p),
            "role_rate": rate(len(r), len(signup)), "next_day_login_rate": rate(len(n), len(r)),
            "first_payment_rate": rate(len(p), len(n)), "overall_rate": rate(len(p), len(signup))}


def pay_window_cohorts(day: int, tz: str) -> list[int]:
    """Cohort days whose payment window (D..D+30) holds `day`: day-30 .. day, oldest first."""
    return list(_pay_window_cohorts(day, tz))


@lru_cache(maxsize=4096)
def _pay_window_cohorts(day: int, tz: str) -> tuple[int, ...]:
    # cached: every payorderuser.day tuple asks again, and 31 zone computations were most of process()
    return tuple(add_days(day, -k, tz) for k in range(PAY_WINDOW_DAYS, -1, -1))


# -- store-backed ------------------------------------------------------------------------

class PaymentDays:
    """The payorderdetail amounts of one server's days, read once per tick.

    Why: cohorts are recomputed in sorted order and neighbouring cohorts share 30
    of their 31 days, so each day of a server is read once; moving to another
    server forgets the previous one (memory: one server's window).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0
        self._server: tuple[str, str, str] | None = None
        self._lo = self._hi = 0
        self._days: dict[int, dict[str, float]] = {}

    def between(self, key: PeriodKey, lo: int, hi: int) -> dict[int, dict[str, float]]:
        """{day: {uid: amount}} for the days of key's server starting in [lo, hi)."""
        server = (key.game, key.area, key.plat)
        if server != self._server or lo < self._lo or lo > self._hi:
            self._server, self._lo, self._hi, self._days = server, lo, lo, {}
        if hi > self._hi:
            self._load(server, self._hi, hi)
            self._hi = hi
        for day in [d for d in self._days if d < lo]:
            del self._days[day]
        self._lo = lo
        return {d: u for d, u in self._days.items() if d < hi}

    def _load(self, server: tuple[str, str, str], lo: int, hi: int) -> None:
        game, area, plat = server
        docs = self.store.find("payorderdetail", {"game": game, "area": area, "plat": plat},
                               ts_from=lo, ts_to=hi, sort=())
        self.reads += 1
        for d in docs:
            self._days.setdefault(int(d["ts"]), {})[str(d["uid"])] = float(d.get("amount", 0))


class _PaymentWindowBolt(TimerBolt):
    """A timer bolt whose cohorts read 31 days of payments (PaymentDays, fresh on each tick)."""

    payments: PaymentDays | None = None

    def tick(self, now: float) -> None:
        self.payments = PaymentDays(self.store)  # what was read last tick may have changed since
        super().tick(now)

    def paid(self, key: PeriodKey, tz: str) -> dict[int, dict[str, float]]:
        """{day: {uid: amount}} over the cohort day's payment window D..D+30."""
        if self.payments is None:
            self.payments = PaymentDays(self.store)
        return self.payments.between(key, key.ts, add_days(key.ts, PAY_WINDOW_DAYS + 1, tz))


# -- bolts -----------------------------------------------------------------------------

COLLECTIONS = [
    Collection("cohortltv", ("game", "area", "plat", "ts"), {
        "ts": "cohort day D: the local day's 00:00 in the game's zone",
        "cohort": "users whose first role creation in this game/area/plat is on D (rolefirst.ts == D)",
        **{f"amount_d{k}": f"what the cohort's users paid on days D..D+{k} (payorderdetail amounts)"
           for k in LTV_OFFSETS},
        **{f"payers_d{k}": f"cohort users who paid on any of the days D..D+{k}" for k in LTV_OFFSETS},
        **{f"ltv_d{k}": f"amount_d{k} / cohort, two decimals (cumulative lifetime value at D+{k})"
           for k in LTV_OFFSETS},
    }, doc="cumulative lifetime value of one day's new roles on one game server "
           "(recomputed from rolefirst and payorderdetail)", writer="cohortltv"),
    Collection("funnelday", ("game", "area", "plat", "ts"), {
        "ts": "sign-up day D: the local day's 00:00 in the game's zone",
        "signup": "users who signed up on D (signup_day members)",
        "role": "of them, users who created a role on D (createrole_day)",
        "next_day_login": "of those, users who logged in on D+1 (login_day)",
        "first_payment": f"of those, users who paid on any of the days D..D+{PAY_WINDOW_DAYS} (payorderdetail)",
        "role_rate": "100 * role / signup, two decimals (0 when the step before is empty)",
        "next_day_login_rate": "100 * next_day_login / role, two decimals",
        "first_payment_rate": "100 * first_payment / next_day_login, two decimals",
        "overall_rate": "100 * first_payment / signup, two decimals",
    }, doc="sign-up -> role creation -> next-day login -> first payment funnel of one day's sign-ups on "
           "one game server (recomputed from the membership sets and payorderdetail)", writer="funnelday"),
]


class CohortLtvBolt(_PaymentWindowBolt):
    """Recompute cohortltv for the cohorts that createrole.day and payorderuser.day mark dirty."""

    name = "cohortltv"
    topics: ClassVar[list[str]] = ["createrole.day", "payorderuser.day"]
    sources: ClassVar[dict[str, str]] = {"createrole.day": "createrole_day", "payorderuser.day": "pay_day"}
    collection = "cohortltv"

    def dirtied(self, topic: str, day: int, tz: str) -> Iterable[int]:
        return [day] if topic.startswith("createrole.") else pay_window_cohorts(day, tz)

    def current(self, now: int, tz: str) -> Iterable[int]:
        return pay_window_cohorts(day_start(now, tz), tz)

    def compute(self, key: PeriodKey, tz: str, sets: SetCache) -> dict[str, Any] | None:
        first = self.first_members("rolefirst", key, key.ts, add_days(key.ts, 1, tz), sets,
                                   sets.bitmap(MemberKey("createrole_day", key.game, key.area, key.plat, key.ts)))
        if first is None:       # first-day documents of an older version: through the uids
            cohort = self.uids("rolefirst", key, add_days(key.ts, 1, tz))
        else:
            cohort = self.store.decode(key.game, first) if first else set()
        if not cohort:
            return None  # no new roles that day: no document
        ends = {k: add_days(key.ts, k + 1, tz) for k in LTV_OFFSETS}
        return ltv_figures(cohort, self.paid(key, tz), ends)


class FunnelDayBolt(_PaymentWindowBolt):
    """Recompute funnelday for the sign-up days that the day bolts' state tuples mark dirty."""

    name = "funnelday"
    topics: ClassVar[list[str]] = ["signup.day", "createrole.day", "login.day", "payorderuser.day"]
    sources: ClassVar[dict[str, str]] = {"signup.day": "signup_day", "createrole.day": "createrole_day",
                                         "login.day": "login_day", "payorderuser.day": "pay_day"}
    collection = "funnelday"

    def dirtied(self, topic: str, day: int, tz: str) -> Iterable[int]:
        if topic.startswith("login."):
            return [add_days(day, -1, tz)]      # the next-day login step of yesterday's sign-ups
        if topic.startswith("payorderuser."):
            return pay_window_cohorts(day, tz)
        return [day]

    def current(self, now: int, tz: str) -> Iterable[int]:
        return pay_window_cohorts(day_start(now, tz), tz)

    def compute(self, key: PeriodKey, tz: str, sets: SetCache) -> dict[str, Any] | None:
        g, a, p = key.game, key.area, key.plat
        signup = sets.bitmap(MemberKey("signup_day", g, a, p, key.ts))
        if not signup:
            return None  # nobody signed up that day: no document
        role = sets.bitmap(MemberKey("createrole_day", g, a, p, key.ts)) & signup
        next_day = sets.bitmap(MemberKey("login_day", g, a, p, add_days(key.ts, 1, tz))) if role else BitMap()
        payers = BitMap()
        if role & next_day:
            paid: set[str] = set()
            for users in self.paid(key, tz).values():
                paid.update(users)
            payers = self.uid_bitmap(key, paid)     # the ids the member bitmaps hold
        return funnel_figures(signup, role, next_day, payers)
