"""cohortltv and funnelday (bolts/cohorts.py): pure figures, and the timer bolts on a real store.

The store is filled with what the event bolts write (rolefirst, membership sets,
payorderdetail), the bolts get the state tuples the day bolts emit, and tick/flush
run as the base loop runs them; the stored documents are checked exactly.
"""
from __future__ import annotations

import pytest

from analytics.schema import collections_of
from analytics.store.base import Batch
from bolts.cohorts import (CohortLtvBolt, FunnelDayBolt, PaymentDays, funnel_figures, ltv_figures, money_ratio,
                           pay_window_cohorts)
from bolts.timer import PeriodKey
from tests.unit.test_timer_bolts import (DAY, JAN08, JAN09, SERVER, docs, first_days, firsts, make, members, state,
                                         store, tick)

# the fixtures, imported for their parameters (SQLite and the MongoDB backend; first days derived and stored)
__all__ = ["store", "first_days"]

pytestmark = pytest.mark.timeout(30)

JAN07 = JAN08 - DAY
FEB07 = 1423238400
TZ = "Asia/Shanghai"


def details(store, rows: list[tuple[int, str, float]], server: dict = SERVER) -> None:
    b = Batch()
    for day, uid, amount in rows:
        b.upsert("payorderdetail", {**server, "ts": day, "uid": uid}, max={"times": 1, "amount": amount})
    store.apply(b)


# -- pure -----------------------------------------------------------------------------------------

def test_ltv_counts_the_cohorts_payments_up_to_each_day():
    ends = {1: JAN08 + 2 * DAY, 7: JAN08 + 8 * DAY, 14: JAN08 + 15 * DAY, 30: JAN08 + 31 * DAY}
    paid = {JAN08: {"a": 6.0, "x": 100.0}, JAN08 + DAY: {"a": 0.1, "b": 0.2},
            JAN08 + 7 * DAY: {"c": 30.0}, JAN08 + 30 * DAY: {"b": 1.0}}
    got = ltv_figures({"a", "b", "c"}, paid, ends)
    assert got == {"cohort": 3, "amount_d1": 6.3, "payers_d1": 2, "ltv_d1": 2.1,
                   "amount_d7": 36.3, "payers_d7": 3, "ltv_d7": 12.1,
                   "amount_d14": 36.3, "payers_d14": 3, "ltv_d14": 12.1,
                   "amount_d30": 37.3, "payers_d30": 3, "ltv_d30": 12.43}
    assert money_ratio(1.0, 0) == 0.0


def test_funnel_steps_are_nested_and_rates_are_of_the_step_before():
    got = funnel_figures({"a", "b", "c", "d"}, {"a", "b", "c", "z"}, {"a", "b", "y"}, {"b", "c", "x"})
    assert got == {"signup": 4, "role": 3, "next_day_login": 2, "first_payment": 1, "role_rate": 75.0,
                   "next_day_login_rate": 66.67, "first_payment_rate": 50.0, "overall_rate": 25.0}
    assert funnel_figures(set(), set(), set(), set())["role_rate"] == 0.0


def test_a_payment_changes_the_31_cohorts_whose_window_holds_it():
    days = pay_window_cohorts(FEB07, TZ)
    assert len(days) == 31 and days[-1] == FEB07 and days[0] == FEB07 - 30 * DAY


def test_payment_days_reads_each_day_of_a_server_once(tmp_path, store):
    details(store, [(JAN07 + i * DAY, f"u{i}", float(i)) for i in range(40)])
    cache = PaymentDays(store)
    key = PeriodKey(SERVER["game"], SERVER["area"], SERVER["plat"], JAN07)
    first = cache.between(key, JAN07, JAN07 + 31 * DAY)
    assert sorted(first) == [JAN07 + i * DAY for i in range(31)]
    nxt = cache.between(key._replace(ts=JAN08), JAN08, JAN08 + 31 * DAY)
    assert sorted(nxt) == [JAN08 + i * DAY for i in range(31)] and nxt[JAN08 + 30 * DAY] == {"u31": 31.0}
    assert cache.reads == 2                                   # the second read was the one new day
    other = cache.between(key._replace(area="other"), JAN08, JAN08 + 31 * DAY)
    assert other == {} and cache.reads == 3


# -- bolts on a store ---------------------------------------------------------------------------------

def _ltv_fixture(store) -> None:
    firsts(store, "rolefirst", {"a": JAN08, "b": JAN08, "c": JAN08, "old": JAN07})
    details(store, [(JAN07, "old", 50.0), (JAN08, "a", 6.0), (JAN09, "b", 30.0), (JAN08 + 10 * DAY, "a", 1.5),
                    (JAN08 + 30 * DAY, "c", 2.0), (JAN08 + 31 * DAY, "c", 99.0), (JAN08, "stranger", 500.0)])


def test_cohortltv_stored_exactly_and_idempotent(tmp_path, store):
    _ltv_fixture(store)
    bolt = make(CohortLtvBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(state("createrole.day", JAN08))
    bolt.process(state("payorderuser.day", JAN08 + 30 * DAY))     # dirties JAN08 .. JAN08+30
    tick(bolt, store, JAN08 + 40 * DAY)
    want = {**SERVER, "ts": JAN08, "cohort": 3, "amount_d1": 36.0, "payers_d1": 2, "ltv_d1": 12.0,
            "amount_d7": 36.0, "payers_d7": 2, "ltv_d7": 12.0, "amount_d14": 37.5, "payers_d14": 2, "ltv_d14": 12.5,
            "amount_d30": 39.5, "payers_d30": 3, "ltv_d30": 13.17}
    assert docs(store, "cohortltv") == [want]                # JAN07's cohort was not dirtied yet
    bolt.process(state("payorderuser.day", JAN07))
    bolt.process(state("payorderuser.day", JAN08))
    tick(bolt, store, JAN08 + 40 * DAY)
    got = {d["ts"]: d for d in docs(store, "cohortltv")}
    assert got[JAN08] == want
    assert got[JAN07]["cohort"] == 1 and got[JAN07]["amount_d30"] == 50.0 and got[JAN07]["ltv_d1"] == 50.0


def test_a_later_payment_of_the_cohort_updates_its_ltv(tmp_path, store):
    _ltv_fixture(store)
    bolt = make(CohortLtvBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(state("createrole.day", JAN08))
    tick(bolt, store, JAN08 + DAY)
    assert docs(store, "cohortltv")[0]["amount_d30"] == 39.5
    details(store, [(JAN08 + 20 * DAY, "b", 10.0)])
    bolt.process(state("payorderuser.day", JAN08 + 20 * DAY))
    tick(bolt, store, JAN08 + 21 * DAY)
    doc = {d["ts"]: d for d in docs(store, "cohortltv")}[JAN08]
    assert (doc["amount_d14"], doc["amount_d30"], doc["ltv_d30"]) == (37.5, 49.5, 16.5)


def test_funnelday_stored_exactly(tmp_path, store):
    members(store, "signup_day", JAN08, ["a", "b", "c", "d"])
    members(store, "createrole_day", JAN08, ["a", "b", "c", "x"])
    members(store, "login_day", JAN09, ["a", "b", "x"])
    details(store, [(JAN08 + 30 * DAY, "a", 6.0), (JAN08 + 31 * DAY, "b", 6.0), (JAN07, "b", 6.0)])
    bolt = make(FunnelDayBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(state("signup.day", JAN08))
    tick(bolt, store, JAN09)
    assert docs(store, "funnelday") == [{**SERVER, "ts": JAN08, "signup": 4, "role": 3, "next_day_login": 2,
                                         "first_payment": 1, "role_rate": 75.0, "next_day_login_rate": 66.67,
                                         "first_payment_rate": 50.0, "overall_rate": 25.0}]


def test_funnelday_is_dirtied_by_the_next_days_logins_and_the_window_payments(tmp_path, store):
    members(store, "signup_day", JAN08, ["a"])
    members(store, "createrole_day", JAN08, ["a"])
    bolt = make(FunnelDayBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(state("createrole.day", JAN08))
    tick(bolt, store, JAN08)
    assert docs(store, "funnelday")[0]["next_day_login"] == 0
    members(store, "login_day", JAN09, ["a"])
    bolt.process(state("login.day", JAN09))
    tick(bolt, store, JAN09)
    assert docs(store, "funnelday")[0]["next_day_login"] == 1
    details(store, [(JAN08 + 5 * DAY, "a", 1.0)])
    bolt.process(state("payorderuser.day", JAN08 + 5 * DAY))
    tick(bolt, store, JAN09)
    assert docs(store, "funnelday")[0]["first_payment"] == 1
    assert bolt.dirtied("login.day", JAN09, TZ) == [JAN08]


def test_no_cohort_no_document(tmp_path, store):
    for cls, topic in ((CohortLtvBolt, "createrole.day"), (FunnelDayBolt, "signup.day")):
        bolt = make(cls, tmp_path, store, refresh_seconds=None)
        bolt.process(state(topic, JAN08))
        tick(bolt, store, JAN09)
        assert docs(store, cls.collection) == []


def test_written_fields_are_the_declared_ones(tmp_path, store):
    cat = collections_of(["bolts.cohorts"])
    assert sorted(cat) == ["cohortltv", "funnelday"]
    _ltv_fixture(store)
    members(store, "signup_day", JAN08, ["a"])
    for cls, topic in ((CohortLtvBolt, "createrole.day"), (FunnelDayBolt, "signup.day")):
        bolt = make(cls, tmp_path, store, refresh_seconds=None)
        bolt.process(state(topic, JAN08))
        tick(bolt, store, JAN09)
        for d in docs(store, cls.collection):
            assert set(d) - {"game", "area", "plat"} == set(cat[cls.collection].fields)
