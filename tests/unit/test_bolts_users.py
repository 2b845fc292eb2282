"""usercenter and userlevel (bolts/users.py): newest record wins, grade distribution moves."""
from __future__ import annotations

import pytest

from analytics.tuples import Tuple
from bolts.users import (Grade, Profile, UserCenterBolt, UserLevelBolt, UserUpdates, changes_for,
                         level_counts, level_distribution, parse_syncuser)
from tests.unit.bolt_fixtures import AREA, gamelog, make_bolt, open_test_store, run

pytestmark = pytest.mark.timeout(30)


def user(uid="141560631361753593", ts=1423213068, grade=3, rest=200, name="superman", game="wsdx", plat="1059"):
    return {"game": game, "area": AREA, "plat": plat, "ts": ts, "uid": uid, "name": name, "grade": grade,
            "rest_yuanbao": rest, "birthday": 1418637569, "acctid": "kutheso@hotmail.com", "score": 930,
            "login_time": 1418888736}


def test_newer_profile_wins_and_older_changes_nothing():
    doc = {"ts": 100, "name": "a", "rest_yuanbao": 5, "grade": 2, "grade_ts": 100}
    assert changes_for(doc, Profile(90, {"name": "old", "rest_yuanbao": 1}), Grade(90, 1)) == {}
    assert changes_for(doc, Profile(110, {"name": "b", "rest_yuanbao": 7}), Grade(110, 4)) == {
        "name": "b", "rest_yuanbao": 7, "ts": 110, "grade": 4, "grade_ts": 110}
    assert changes_for(None, None, Grade(5, 1)) == {"grade": 1, "grade_ts": 5}


def test_a_level_change_newer_than_the_sync_keeps_its_grade():
    # the sync at 120 is newer than the profile (100) but older than the level change (150)
    doc = {"ts": 100, "name": "a", "grade": 5, "grade_ts": 150}
    assert changes_for(doc, Profile(120, {"name": "b"}), Grade(120, 3)) == {"name": "b", "ts": 120}


def test_updates_are_order_insensitive_with_ties_broken_by_content():
    key, p1, g1 = parse_syncuser(user(ts=10, name="x"))
    _, p2, g2 = parse_syncuser(user(ts=10, name="y"))
    a, b = UserUpdates(), UserUpdates()
    for p in (p1, p2):
        a.add_profile(key, p)
    for p in (p2, p1):
        b.add_profile(key, p)
    assert a.take() == b.take() == {key: (Profile(10, p2.fields), None)}


def test_syncuser_needs_grade_and_rest_yuanbao():
    body = user()
    del body["rest_yuanbao"]
    with pytest.raises(ValueError, match="body.rest_yuanbao must be a number"):
        parse_syncuser(body)


def test_level_distribution_and_vanished_grades():
    dist = level_distribution([{"grade": 3}, {"grade": 3}, {"grade": 5}, {"name": "no grade"}])
    assert dist == {3: 2, 5: 1}
    assert level_counts(dist, [1, 3]) == {1: 0, 3: 2, 5: 1}


def test_bolts_keep_newest_user_data_and_level_counts(tmp_path):
    store = open_test_store(tmp_path)
    center, level = make_bolt(UserCenterBolt, tmp_path, store), make_bolt(UserLevelBolt, tmp_path, store)

    def step(tuples):
        out = run(center, tuples)
        run(level, [Tuple(t, i, ts, b) for t, i, ts, b in out])
        return out

    out = step([Tuple("syncuser", "1", 100, user("u1", ts=100, grade=3)),
                Tuple("syncuser", "2", 100, user("u2", ts=100, grade=3)),
                Tuple("syncuser", "3", 90, user("u1", ts=90, grade=1, rest=999))])  # older: loses
    assert [b for _, _, _, b in out] == [{"game": "wsdx", "area": AREA, "plat": "1059", "ts": 100}]
    assert {d["grade"]: d["count"] for d in store.find("userlevel")} == {3: 2}
    u1 = store.find("usercenter", {"uid": "u1"})[0]
    assert (u1["ts"], u1["grade"], u1["rest_yuanbao"], u1["name"]) == (100, 3, 200, "superman")
    assert store.find("userpay", {"uid": "u1"})[0]["rest_yuanbao"] == 200

    # u1 levels up to 5 (gamelog), then an older sync arrives late: the grade stays 5, u2's newer sync moves it
    step([gamelog("level_logchange", "u1", 200, game="wsdx", plat="1059", grade=5, old_grade=3)])
    assert {d["grade"]: d["count"] for d in store.find("userlevel")} == {3: 1, 5: 1}
    out = step([Tuple("syncuser", "4", 150, user("u1", ts=150, grade=4, rest=50)),
                Tuple("syncuser", "5", 300, user("u2", ts=300, grade=6, rest=0))])
    assert {d["grade"]: d["count"] for d in store.find("userlevel")} == {3: 0, 5: 1, 6: 1}
    u1 = store.find("usercenter", {"uid": "u1"})[0]
    assert (u1["ts"], u1["grade"], u1["grade_ts"], u1["rest_yuanbao"]) == (150, 5, 200, 50)
    assert {d["uid"]: d["rest_yuanbao"] for d in store.find("userpay")} == {"u1": 50, "u2": 0}
    # replaying everything changes nothing and emits nothing
    assert step([Tuple("syncuser", "4", 150, user("u1", ts=150, grade=4, rest=50))]) == []


def test_every_document_has_every_field_whichever_source_came_first(tmp_path):
    """A user seen only in a level change, and a userpay document of a user who never paid."""
    store = open_test_store(tmp_path)
    center = make_bolt(UserCenterBolt, tmp_path, store)
    run(center, [gamelog("level_logchange", "u1", 200, game="wsdx", plat="1059", grade=5, old_grade=4)])
    key = {"game": "wsdx", "area": AREA, "plat": "1059", "uid": "u1"}
    assert store.find("usercenter") == [{**key, "grade": 5, "grade_ts": 200, "name": "", "rest_yuanbao": 0,
                                         "birthday": 0, "acctid": "", "score": 0, "login_time": 0, "ts": 0}]
    run(center, [Tuple("syncuser", "1", 100, user("u1", ts=100, grade=3))])   # older grade, first profile
    u1 = store.find("usercenter")[0]
    assert (u1["ts"], u1["name"], u1["rest_yuanbao"], u1["grade"], u1["grade_ts"]) == (100, "superman", 200, 5, 200)
    assert store.find("userpay") == [{**key, "rest_yuanbao": 200, "amount": 0, "times": 0, "ts": 0,
                                      "last_pay_day": 0}]
