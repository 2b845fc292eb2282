"""The timer bolts' pure computation: rates, period bounds, retention offsets, payer splits."""
from __future__ import annotations

import pytest

from bolts.active import active_figures, period_bounds
from bolts.paytrace import paytrace_dirtied, paytrace_figures
from bolts.retention import retention_dirtied, retention_figures
from bolts.timer import RETENTION_OFFSETS, cohorts_touched, later_days, rate, retention_counts

pytestmark = pytest.mark.timeout(10)

SH = "Asia/Shanghai"          # UTC+8, no DST: the seed's zone
NY = "America/New_York"       # DST starts Sunday 2015-03-08
DAY = 86400

# Local midnights, Asia/Shanghai
JAN01, JAN02, JAN04, JAN05, JAN08, JAN12 = 1420041600, 1420128000, 1420300800, 1420387200, 1420646400, 1420992000
JAN31, FEB01, MAR02 = 1422633600, 1422720000, 1425225600
DEC29 = 1419782400
# Local midnights, America/New_York (EST until 2015-03-08 02:00, EDT after)
NY_MAR01, NY_MAR02, NY_MAR07, NY_MAR08, NY_MAR09, NY_MAR10, NY_APR01 = (
    1425186000, 1425272400, 1425704400, 1425790800, 1425873600, 1425960000, 1427860800)


# -- rates ---------------------------------------------------------------------------------

def test_rate_two_decimals_and_zero_whole():
    assert rate(109, 214) == 50.93
    assert rate(105, 214) == 49.07
    assert rate(1, 3) == 33.33
    assert rate(2, 3) == 66.67
    assert rate(5, 5) == 100.0
    assert rate(0, 5) == 0.0
    assert rate(0, 0) == 0.0
    assert rate(7, 0) == 0.0
    assert isinstance(rate(0, 0), float)


# -- active ----------------------------------------------------------------------------------

def test_seed_example_214_is_109_new_plus_105_old():
    assert active_figures(214, 109) == {"ac_user": 214, "new_ac_user": 109, "new_ac_rate": 50.93,
                                        "old_ac_user": 105, "old_ac_rate": 49.07}


def test_active_figures_nobody_and_all_new():
    assert active_figures(0, 0) == {"ac_user": 0, "new_ac_user": 0, "new_ac_rate": 0.0,
                                    "old_ac_user": 0, "old_ac_rate": 0.0}
    assert active_figures(3, 3) == {"ac_user": 3, "new_ac_user": 3, "new_ac_rate": 100.0,
                                    "old_ac_user": 0, "old_ac_rate": 0.0}


def test_period_bounds_utc8():
    ts = 1420688004  # the seed's login: 2015-01-08 11:33 +08:00, a Thursday
    assert period_bounds("day", ts, SH) == (JAN08, JAN08 + DAY)
    assert period_bounds("week", ts, SH) == (JAN05, JAN12)
    assert period_bounds("month", ts, SH) == (JAN01, FEB01)
    # 2015-01-04 23:59:59 +08 is Sunday: still the week of Monday 2014-12-29
    assert period_bounds("week", JAN05 - 1, SH) == (DEC29, JAN05)
    assert period_bounds("week", JAN05, SH) == (JAN05, JAN12)
    # the last second of January is January, the next is February
    assert period_bounds("month", FEB01 - 1, SH) == (JAN01, FEB01)
    assert period_bounds("month", FEB01, SH)[0] == FEB01
    # a UTC-day boundary is not a local one: 2015-01-07 16:00 UTC is 2015-01-08 00:00 +08
    assert period_bounds("day", JAN08 - 1, SH) == (JAN08 - DAY, JAN08)


def test_period_bounds_new_york_across_dst():
    noon_mar08 = NY_MAR08 + 12 * 3600
    assert period_bounds("day", noon_mar08, NY) == (NY_MAR08, NY_MAR09)
    assert NY_MAR09 - NY_MAR08 == 23 * 3600                      # the short day
    assert period_bounds("week", noon_mar08, NY) == (NY_MAR02, NY_MAR09)  # Sunday belongs to Monday's week
    assert NY_MAR09 - NY_MAR02 == 7 * DAY - 3600
    assert period_bounds("month", noon_mar08, NY) == (NY_MAR01, NY_APR01)
    # the same instant is a different local day in Shanghai
    assert period_bounds("day", NY_MAR08, SH)[0] != NY_MAR08


def test_period_bounds_rejects_hour():
    with pytest.raises(ValueError, match="'hour'"):
        period_bounds("hour", JAN08, SH)


# -- retention offsets -------------------------------------------------------------------------

def test_later_days_across_a_month_boundary():
    days = later_days(JAN31, SH)
    assert list(days) == [1, 2, 3, 4, 5, 6, 7, 14, 30]
    assert days[1] == FEB01
    assert days[7] == FEB01 + 6 * DAY
    assert days[14] == JAN31 + 14 * DAY      # 2015-02-14
    assert days[30] == MAR02                 # February has 28 days


def test_later_days_new_york_counts_calendar_days_not_86400s():
    days = later_days(NY_MAR07, NY)
    assert days[1] == NY_MAR08
    assert days[2] == NY_MAR09 and days[3] == NY_MAR10
    assert days[2] - NY_MAR07 == 2 * DAY - 3600


def test_cohorts_touched_by_a_login_day():
    got = cohorts_touched(FEB01, SH)
    assert got == [JAN02, JAN02 + 16 * DAY] + [FEB01 - k * DAY for k in (7, 6, 5, 4, 3, 2, 1)]
    assert JAN31 in got and FEB01 not in got
    assert len(got) == len(RETENTION_OFFSETS)


def test_retention_dirtied_by_topic():
    assert retention_dirtied("createrole.day", JAN08, SH) == [JAN08]
    assert retention_dirtied("login.day", FEB01, SH) == cohorts_touched(FEB01, SH)


def test_retention_figures_exact():
    cohort = {"a", "b", "c", "d"}
    later = {1: {"a", "b", "c", "x"}, 2: {"a", "y"}, 7: {"a", "b", "c", "d"}, 30: {"z"}}
    assert retention_figures(cohort, later) == {
        "cohort": 4,
        "d1": 3, "d1_rate": 75.0, "d2": 1, "d2_rate": 25.0, "d3": 0, "d3_rate": 0.0,
        "d4": 0, "d4_rate": 0.0, "d5": 0, "d5_rate": 0.0, "d6": 0, "d6_rate": 0.0,
        "d7": 4, "d7_rate": 100.0, "d14": 0, "d14_rate": 0.0, "d30": 0, "d30_rate": 0.0,
    }


def test_retention_of_an_empty_cohort_is_all_zero():
    got = retention_figures(set(), {1: {"a"}, 2: {"b"}})
    assert got["cohort"] == 0
    assert all(got[f"d{k}"] == 0 and got[f"d{k}_rate"] == 0.0 for k in RETENTION_OFFSETS)
    assert len(got) == 1 + 2 * len(RETENTION_OFFSETS)


def test_retention_counts_thirds():
    got = retention_counts({"a", "b", "c"}, {3: {"a"}, 14: {"a", "b"}})
    assert (got["d3"], got["d3_rate"], got["d14"], got["d14_rate"]) == (1, 33.33, 2, 66.67)


# -- paytrace ------------------------------------------------------------------------------------

def test_paytrace_new_vs_returning_payers():
    payers = {"p1", "p2", "p3", "p4"}         # paid on D
    first = {"p1", "p2", "q9"}                # first pay day is D (q9 has no payment on D: not counted)
    later = {1: {"p1", "p3"}, 2: {"p1", "p2"}, 30: {"p2", "p4"}}
    assert paytrace_figures(payers, first, later) == {
        "pay_user": 4, "new_pay_user": 2, "old_pay_user": 2,
        "d1": 1, "d1_rate": 50.0, "d2": 2, "d2_rate": 100.0, "d3": 0, "d3_rate": 0.0,
        "d4": 0, "d4_rate": 0.0, "d5": 0, "d5_rate": 0.0, "d6": 0, "d6_rate": 0.0,
        "d7": 0, "d7_rate": 0.0, "d14": 0, "d14_rate": 0.0, "d30": 1, "d30_rate": 50.0,
    }


def test_paytrace_only_returning_payers():
    got = paytrace_figures({"a", "b"}, set(), {1: {"a", "b"}})
    assert (got["pay_user"], got["new_pay_user"], got["old_pay_user"]) == (2, 0, 2)
    assert got["d1"] == 0 and got["d1_rate"] == 0.0      # retention follows first-time payers only


def test_paytrace_dirtied_includes_the_day_and_its_cohorts():
    got = paytrace_dirtied(FEB01, SH)
    assert got[-1] == FEB01
    assert got[:-1] == cohorts_touched(FEB01, SH)
    assert JAN31 in got and JAN02 in got
