"""Payment snapshots (bolts/payment.py): superseding, order, replays, day and user totals."""
from __future__ import annotations

import pytest

from analytics.store.base import MemberKey
from analytics.tuples import Tuple
from bolts.payment import (DetailKey, PaymentSnapshots, PayOrderUserBolt, Totals, day_totals, parse_payment,
                           user_totals)
from tests.unit.bolt_fixtures import AREA, make_bolt, open_test_store, run

pytestmark = pytest.mark.timeout(30)

DAY8 = 1420646400   # 2015-01-08 00:00 +08:00
DAY9 = DAY8 + 86400
SEED_USERS = {"3412825528": {"times": 1, "amount": 2.0}, "3349885891": {"times": 1, "amount": 1.0},
              "1525032152": {"amount": 100.0, "times": 5}, "3429688738": {"amount": 10.0, "times": 1}}


def record(users, ts=DAY8, game="dl", plat="2001"):
    return {"game": game, "area": AREA, "plat": plat, "ts": ts, "users": users}


def tup(body, id=None):
    return Tuple("payment", id or repr(body), body["ts"], body)


def test_the_seed_record_gives_the_seed_figures():
    totals = parse_payment(record(SEED_USERS), "Asia/Shanghai")
    assert totals[DetailKey("dl", AREA, "2001", DAY8, "1525032152")] == Totals(5, 100.0)
    by_uid = {k.uid: t for k, t in totals.items()}
    assert day_totals(by_uid) == (4, 8, 113.0)


def test_later_snapshot_supersedes_and_order_does_not_matter():
    early = record({"u1": {"times": 1, "amount": 6.0}, "u2": {"times": 1, "amount": 1.0}})
    late = record({"u1": {"times": 3, "amount": 36.0}})
    a, b = PaymentSnapshots(), PaymentSnapshots()
    for body in (early, late, early):
        a.add(body, "Asia/Shanghai")
    for body in (late, early):
        b.add(body, "Asia/Shanghai")
    want = {DetailKey("dl", AREA, "2001", DAY8, "u1"): Totals(3, 36.0),
            DetailKey("dl", AREA, "2001", DAY8, "u2"): Totals(1, 1.0)}
    assert a.take() == want and b.take() == want


def test_record_day_is_computed_in_the_games_zone():
    # 2015-01-08 00:00 +08:00 is the 7th in New York: its day starts 2015-01-07 00:00 -05:00
    totals = parse_payment(record({"u": {"times": 1, "amount": 1}}, game="wsdx"), "America/New_York")
    assert [k.ts for k in totals] == [1420606800]


def test_user_totals_over_days():
    assert user_totals({DAY9: Totals(2, 0.2), DAY8: Totals(1, 0.1)}) == (3, 0.3, DAY8, DAY9)


@pytest.mark.parametrize("users, message", [
    ({"u": {"times": "1", "amount": 1}}, "times must be an integer"),
    ({"u": {"times": 1}}, "amount must be a number"),
    ({"u": {"times": -1, "amount": 1}}, "negative total"),
    ([1, 2], "body.users must be an object"),
])
def test_bad_payment_records_are_refused_with_the_reason(users, message):
    with pytest.raises(ValueError, match=message):
        parse_payment(record(users), "Asia/Shanghai")


def test_bolt_writes_details_payers_sums_and_user_totals(tmp_path):
    store = open_test_store(tmp_path)
    bolt = make_bolt(PayOrderUserBolt, tmp_path, store)
    sent = run(bolt, [tup(record(SEED_USERS))])
    assert [(t, ts, body) for t, _, ts, body in sent] == [("payorderuser.day", DAY8, {
        "game": "dl", "area": AREA, "plat": "2001", "ts": DAY8, "count": 4, "pay_amount": 113.0, "pay_count": 8,
        "type": "payorderuser"})]
    assert store.find("payorderuser") == [{"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8,
                                           "pay_amount": 113.0, "pay_count": 8, "type": "payorderuser", "count": 4}]
    assert store.members(MemberKey("pay_day", "dl", AREA, "2001", DAY8)) == set(SEED_USERS)

    # a later snapshot of the same day (u 1525032152 paid again) and a first snapshot of the next day
    later = dict(SEED_USERS, **{"1525032152": {"times": 6, "amount": 130.0}})
    sent = run(bolt, [tup(record({"1525032152": {"times": 1, "amount": 6.0}}, ts=DAY9)), tup(record(later))])
    assert [(body["ts"], body["count"], body["pay_count"], body["pay_amount"]) for _, _, _, body in sent] == [
        (DAY8, 4, 9, 143.0), (DAY9, 1, 1, 6.0)]
    # the earlier snapshot replayed late changes nothing
    sent = run(bolt, [tup(record(SEED_USERS))])
    assert [(body["count"], body["pay_count"], body["pay_amount"]) for _, _, _, body in sent] == [(4, 9, 143.0)]
    days = {d["ts"]: (d["count"], d["pay_count"], d["pay_amount"]) for d in store.find("payorderuser")}
    assert days == {DAY8: (4, 9, 143.0), DAY9: (1, 1, 6.0)}
    up = store.find("userpay", {"uid": "1525032152"})
    assert up == [{"game": "dl", "area": AREA, "plat": "2001", "uid": "1525032152", "amount": 136.0, "times": 7,
                   "ts": DAY8, "last_pay_day": DAY9, "rest_yuanbao": 0}]
    assert store.find("payorderdetail", {"uid": "1525032152", "ts": DAY8})[0]["amount"] == 130.0
    assert len(store.find("userpay")) == 4


def test_a_record_with_no_users_is_ignored(tmp_path):
    bolt = make_bolt(PayOrderUserBolt, tmp_path, open_test_store(tmp_path))
    assert run(bolt, [tup(record({}))]) == []
    assert bolt.counters.ignored == 1
