"""The mainline and serverstarttime bolts: distinct task users, first-seen time of a server."""
from __future__ import annotations

import pytest

from bolts.mainline import MainlineBolt, TaskUsers, parse_task
from bolts.serverstarttime import FirstSeen, ServerStartTimeBolt
from tests.unit.bolt_fixtures import AREA, gamelog, make_bolt, open_test_store, run

pytestmark = pytest.mark.timeout(30)

DAY8 = 1420646400


def task(code, uid, ts, tid="t1"):
    return gamelog(code, uid, ts, task_id=tid, task_name=f"task-{tid}")


def test_task_users_are_distinct_per_code():
    t = TaskUsers()
    for tup in (task("trunk_task_accept", "u1", DAY8), task("trunk_task_accept", "u1", DAY8 + 5),
                task("trunk_task_accept", "u2", DAY8), task("trunk_task_finish", "u1", DAY8 + 9)):
        t.add(parse_task(tup.body), "Asia/Shanghai")
    names, users = t.take()
    assert names == {("dl", AREA, "2001", DAY8, "t1"): "task-t1"}
    assert users == {("dl", AREA, "2001", DAY8, "t1", "trunk_task_accept"): {"u1", "u2"},
                     ("dl", AREA, "2001", DAY8, "t1", "trunk_task_finish"): {"u1"}}


def test_mainline_bolt_counts_distinct_users_across_flushes_and_replays(tmp_path):
    store = open_test_store(tmp_path)
    bolt = make_bolt(MainlineBolt, tmp_path, store)
    run(bolt, [task("trunk_task_finish", "u1", DAY8 + 9)])          # out of order: finish seen first
    assert store.find("mainline")[0]["accepted"] == 0
    run(bolt, [task("trunk_task_accept", "u1", DAY8), task("trunk_task_accept", "u2", DAY8 + 1),
               task("trunk_task_finish", "u1", DAY8 + 9)])
    run(bolt, [task("trunk_task_accept", "u1", DAY8)])
    assert store.find("mainline") == [{"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8, "task": "t1",
                                       "task_name": "task-t1", "accepted": 2, "finished": 1}]


def test_server_start_time_is_the_earliest_event(tmp_path):
    f = FirstSeen()
    for ts in (300, 100, 200):
        f.add({"game": "dl", "area": AREA, "ts": ts})
    assert f.take() == {("dl", AREA): 100}
    store = open_test_store(tmp_path)
    bolt = make_bolt(ServerStartTimeBolt, tmp_path, store)
    run(bolt, [gamelog("login_logcount", "u", 500), gamelog("coin_logchange", "u", 400, game="wsdx")])
    run(bolt, [gamelog("signup_logcount", "u", 450), gamelog("signup_logcount", "u", 600)])
    assert {(d["game"], d["ts"]) for d in store.find("serverstarttime")} == {("dl", 450), ("wsdx", 400)}


def test_a_servers_name_is_its_newest_records_in_any_order(tmp_path):
    from bolts.serverstarttime import server_name
    store = open_test_store(tmp_path)
    bolt = make_bolt(ServerStartTimeBolt, tmp_path, store)
    login = gamelog("login_logcount", "u", 500)
    del login.body["data"]                                           # as the spout sends logins: no data
    run(bolt, [login])
    assert store.find("serverstarttime")[0]["server_name_at"] == ""  # every field, '' until a name arrives
    run(bolt, [gamelog("coin_logchange", "u", 900, server_name="Dragon Isle"),
               gamelog("coin_logchange", "u", 700, server_name="s1009")])
    run(bolt, [gamelog("coin_logchange", "u", 800, server_name="s1009-old")])  # older, later: changes nothing
    (doc,) = store.find("serverstarttime")
    assert server_name(doc["server_name_at"]) == "Dragon Isle" and doc["ts"] == 500
