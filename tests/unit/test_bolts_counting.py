"""Distinct-user counting (bolts/counting.py and the login/signup/createrole declarations)."""
from __future__ import annotations

import pytest

from analytics.store.base import Batch, MemberKey
from analytics.tuples import Tuple
from bolts.common import RecentMembers, ServerKey
from bolts.counting import DistinctPeriods, PeriodKey, first_periods
from bolts.createrole import CreateRoleDayBolt, CreateRoleHourBolt
from bolts.login import LoginDayBolt, LoginHourBolt
from bolts.signup import SignupHourBolt
from tests.unit.bolt_fixtures import AREA, feed, gamelog, make_bolt, open_test_store, run

pytestmark = pytest.mark.timeout(30)

DL = ServerKey("dl", AREA, "2001")
WS = ServerKey("wsdx", AREA, "1059")
SH, NY = "Asia/Shanghai", "America/New_York"
DAY8 = 1420646400        # 2015-01-08 00:00 +08:00
DAY7_SH = DAY8 - 86400   # 2015-01-07 00:00 +08:00
DAY7_NY = 1420606800     # 2015-01-07 00:00 -05:00


def test_distinct_users_per_hour_across_two_zones():
    p = DistinctPeriods("hour", keep_periods=10)
    assert p.add(DL, "u1", 1420688004, SH) == (PeriodKey("dl", AREA, "2001", 1420686000), True)
    assert p.add(DL, "u1", 1420688999, SH)[1] is False      # same hour, same user
    assert p.add(DL, "u2", 1420688100, SH)[1] is True
    assert p.add(WS, "u1", 1420688004, NY) == (PeriodKey("wsdx", AREA, "1059", 1420686000), True)
    assert p.take() == {PeriodKey("dl", AREA, "2001", 1420686000): {"u1", "u2"},
                        PeriodKey("wsdx", AREA, "1059", 1420686000): {"u1"}}
    assert p.take() == {}
    assert p.add(DL, "u1", 1420688004, SH)[1] is False      # remembered after take: not written twice


def test_half_hour_zone_hours_start_at_half_past():
    p = DistinctPeriods("hour", keep_periods=10)
    assert p.add(DL, "u1", 1420688004, "Asia/Kolkata")[0].ts == 1420687800


def test_day_boundary_in_utc_plus_8_and_new_york():
    p = DistinctPeriods("day", keep_periods=10)
    p.add(DL, "u1", DAY8 - 1, SH)   # 23:59:59 on the 7th in Shanghai
    p.add(DL, "u1", DAY8, SH)       # 00:00:00 on the 8th
    p.add(WS, "u1", DAY8, NY)       # 11:00 on the 7th in New York
    p.add(WS, "u2", DAY7_NY - 1, NY)  # 23:59:59 on the 6th in New York
    assert p.take() == {PeriodKey("dl", AREA, "2001", DAY7_SH): {"u1"},
                        PeriodKey("dl", AREA, "2001", DAY8): {"u1"},
                        PeriodKey("wsdx", AREA, "1059", DAY7_NY): {"u1"},
                        PeriodKey("wsdx", AREA, "1059", DAY7_NY - 86400): {"u2"}}


def test_first_periods_is_the_earliest_whatever_the_order():
    pending = {PeriodKey("dl", AREA, "2001", DAY8): {"u1", "u2"},
               PeriodKey("dl", AREA, "2001", DAY7_SH): {"u1"}}
    assert first_periods(pending) == {("dl", AREA, "2001", "u1"): DAY7_SH, ("dl", AREA, "2001", "u2"): DAY8}


def test_recent_members_forgets_the_oldest_period():
    r = RecentMembers(keep=2)
    assert r.add("k", 100, "a") is True
    assert r.add("k", 200, "a") is True
    assert r.add("k", 300, "a") is True       # forgets 100
    assert r.add("k", 100, "a") is True       # older than anything kept: new, not kept
    assert r.add("k", 200, "a") is False
    assert len(r) == 2


def test_hour_bolt_writes_members_counts_and_emits_each_new_user_once(tmp_path):
    store = open_test_store(tmp_path)
    hour = make_bolt(LoginHourBolt, tmp_path, store)
    sent = run(hour, [gamelog("login_logcount", "u1", 1420688004), gamelog("login_logcount", "u1", 1420688005),
                      gamelog("login_logcount", "u2", 1420689000),
                      gamelog("login_logcount", "u1", 1420688004, game="wsdx", plat="1059")])
    assert sorted((t, body["game"], tuple(body["userlist"])) for t, _, _, body in sent) == [
        ("login.hour", "dl", ("u1", "u2")), ("login.hour", "wsdx", ("u1",))]
    dl = next(body for _, _, _, body in sent if body["game"] == "dl")
    assert dl == {"game": "dl", "area": AREA, "plat": "2001", "ts": 1420686000, "userlist": ["u1", "u2"]}
    assert store.find("loginhour", {"game": "dl"}) == [
        {"game": "dl", "area": AREA, "plat": "2001", "ts": 1420686000, "type": "login", "count": 2}]
    assert store.members(MemberKey("login_hour", "dl", AREA, "2001", 1420686000)) == {"u1", "u2"}
    # a second flush with a repeated user: nothing new
    assert run(hour, [gamelog("login_logcount", "u2", 1420689001)]) == []
    # a new bolt (a restart) re-emits, and the stored count stays exact
    again = make_bolt(LoginHourBolt, tmp_path, store)
    assert len(run(again, [gamelog("login_logcount", "u2", 1420689001)])) == 1
    assert store.find("loginhour", {"game": "dl"})[0]["count"] == 2


def test_day_bolt_counts_users_emits_stored_counts_and_first_days(tmp_path):
    store = open_test_store(tmp_path)
    day = make_bolt(LoginDayBolt, tmp_path, store)

    def hour_tuple(uid, ts, game="dl", plat="2001"):
        return Tuple("login.hour", f"{uid}{ts}", ts, {"game": game, "area": AREA, "plat": plat, "userlist": [uid],
                                                       "ts": ts})

    sent = run(day, [hour_tuple("u1", DAY8 + 10), hour_tuple("u2", DAY8 + 3600), hour_tuple("u1", DAY8 - 5)])
    assert [body for _, _, _, body in sent] == [
        {"game": "dl", "area": AREA, "plat": "2001", "ts": DAY7_SH, "count": 1, "type": "login"},
        {"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8, "count": 2, "type": "login"}]
    assert all(ts == body["ts"] for _, _, ts, body in sent)
    # out of order: the 6th arrives after the 7th and 8th -> first day moves back
    sent = run(day, [hour_tuple("u1", DAY7_SH - 100), hour_tuple("u3", DAY8 + 7200)])
    assert [(body["ts"], body["count"]) for _, _, _, body in sent] == [(DAY7_SH - 86400, 1), (DAY8, 3)]
    first = {d["uid"]: d["ts"] for d in store.find("userfirst", {"game": "dl"})}
    assert first == {"u1": DAY7_SH - 86400, "u2": DAY8, "u3": DAY8}
    assert [(d["ts"], d["count"]) for d in store.find("loginday", {"game": "dl"})] == [
        (DAY7_SH - 86400, 1), (DAY7_SH, 1), (DAY8, 3)]
    # duplicates: nothing touched, nothing emitted
    assert run(day, [hour_tuple("u3", DAY8 + 9000)]) == []


def test_createrole_day_writes_rolefirst_and_signup_uses_its_own_names(tmp_path):
    store = open_test_store(tmp_path)
    hour, day = make_bolt(CreateRoleHourBolt, tmp_path, store), make_bolt(CreateRoleDayBolt, tmp_path, store)
    sent = run(hour, [gamelog("createrole_logcount", "r1", DAY8 + 5)])
    out = run(day, [Tuple(t, i, ts, body) for t, i, ts, body in sent])
    assert [b for _, _, _, b in out] == [{"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8, "count": 1,
                                          "type": "createrole"}]
    assert store.find("rolefirst", {"uid": "r1"})[0]["ts"] == DAY8
    assert store.find("userfirst") == []
    signup = make_bolt(SignupHourBolt, tmp_path, store)
    assert [t for t, _, _, _ in run(signup, [gamelog("signup_logcount", "s1", DAY8)])] == ["signup.hour"]
    assert store.find("signuphour")[0]["type"] == "signup"


def test_a_record_without_acct_is_dead_lettered_and_the_rest_counted(tmp_path):
    hour = make_bolt(LoginHourBolt, tmp_path)
    bad = gamelog("login_logcount", "u1", DAY8)
    del bad.body["uid"]
    feed(hour, [bad, gamelog("login_logcount", "u2", DAY8)])
    assert hour.counters.errors == 1
    assert "body.uid must be a non-empty string" in (tmp_path / "data" / "deadletter" / "loginhour.jsonl").read_text()
    batch = Batch()
    hour.flush(batch)
    assert [(m.key.set, m.members, m.count_into[2]) for m in batch.members] == [("login_hour", {"u2"}, "count")]


def test_hour_bolt_emits_large_hours_in_chunks_and_the_day_bolt_rejects_a_bad_userlist(tmp_path):
    store = open_test_store(tmp_path)
    hour = make_bolt(LoginHourBolt, tmp_path, store, userlist_chunk=2)
    sent = run(hour, [gamelog("login_logcount", f"u{i}", 1420688004 + i) for i in range(5)])
    assert [body["userlist"] for _, _, _, body in sent] == [["u0", "u1"], ["u2", "u3"], ["u4"]]
    assert len({i for _, i, _, _ in sent}) == 3  # distinct stable ids per chunk
    day = make_bolt(LoginDayBolt, tmp_path, store)
    bad = Tuple("login.hour", "x", DAY8, {"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8, "userlist": "u1"})
    out = run(day, [bad] + [Tuple(t, i, ts, body) for t, i, ts, body in sent])
    assert day.counters.errors == 1
    assert [(b["ts"], b["count"]) for _, _, _, b in out] == [(1420646400, 5)]


def test_hour_bolt_counts_the_spouts_packed_tuples_like_single_records(tmp_path):
    singles = [gamelog("login_logcount", u, 1420688004 + i) for i, u in enumerate(["u1", "u2", "u3"])]
    packed = Tuple("gamelog.login_logcount", "p1", 1420688004,
                   {"game": "dl", "area": AREA, "plat": "2001", "ts": 1420688004, "code": "login_logcount",
                    "uids": ["u1", "u2", "u3"]})
    stores = [open_test_store(tmp_path / d) for d in "abc" if not (tmp_path / d).mkdir()]
    one, other, bad = (make_bolt(LoginHourBolt, tmp_path / d, store) for d, store in zip("abc", stores))
    assert run(one, singles) == run(other, [packed])
    key = MemberKey("login_hour", "dl", AREA, "2001", 1420686000)
    assert stores[0].members(key) == stores[1].members(key) == {"u1", "u2", "u3"}
    run(bad, [Tuple("gamelog.login_logcount", "p2", 1420688004, {**packed.body, "uids": ["u1", 7]})])
    assert bad.counters.errors == 1 and stores[2].members(key) == set()  # dead-lettered, not counted
