"""The timer bolts in a running topology: gamelog/payment tuples -> day bolts -> state tuples -> timers.

One process, broker and components as greenlets over inproc, a SQLite store.
The timers see only the state tuples and the store; their drain tick (event
time: January 2015 on a 2026 wall clock) must leave exact documents behind.
"""
from __future__ import annotations

from typing import Any

import pytest

from analytics.component import Spout
from analytics.config import load_settings
from analytics.store import open_store
from analytics.runners import LocalRunner
from analytics.topology import ComponentSpec, Topology

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]

G, A, P = "dl", "549140c8dbdb67794fc0fa3b", "2001"
SERVER = {"game": G, "area": A, "plat": P}
H = 3600
DEC31, JAN05, JAN08, JAN09 = 1419955200, 1420387200, 1420646400, 1420732800
JAN31, FEB01, FEB07, MAR02 = 1422633600, 1422720000, 1423238400, 1425225600


class FeedSpout(Spout):
    """Emits the (topic, body) pairs of option `records`, then ends."""
    name = "feed"
    emits = ("gamelog.login_logcount", "gamelog.createrole_logcount", "payment")

    def initialize(self) -> None:
        self.records = list(self.option("records", []))

    def next_tuple(self) -> bool:
        for i, (topic, body) in enumerate(self.records):
            self.emit(topic, body, id=f"r{i}", ts=body["ts"])
        return False


def gamelog(code: str, uid: str, ts: int) -> tuple[str, dict[str, Any]]:
    data = {"corpid": int(P), "type": code.split("_")[0], "server_name": "server1009", "opno": 1003,
            "opname": code, "acct": uid}
    return f"gamelog.{code}", {**SERVER, "uid": uid, "ts": ts, "code": code, "data": data}


def payment(ts: int, users: dict[str, float]) -> tuple[str, dict[str, Any]]:
    return "payment", {**SERVER, "ts": ts, "users": {u: {"times": 1, "amount": a} for u, a in users.items()}}


def records() -> list[tuple[str, dict[str, Any]]]:
    out = [gamelog("login_logcount", "u2", DEC31 + 10 * H)]
    out += [gamelog("login_logcount", u, JAN05 + 9 * H) for u in ("u1", "u5")]
    out += [gamelog("login_logcount", u, JAN08 + 11 * H) for u in ("u1", "u2", "u3", "u4")]
    out += [gamelog("createrole_logcount", c, JAN31 + 20 * H) for c in ("c1", "c2", "c3", "c4")]
    out += [gamelog("login_logcount", c, FEB01 + 8 * H) for c in ("c1", "c2", "c3")]
    out += [gamelog("login_logcount", "c1", FEB07 + 8 * H)]
    out += [gamelog("login_logcount", c, MAR02 + 23 * H) for c in ("c2", "c4")]
    out += [payment(JAN08, {"p1": 6.0, "p2": 30.0}), payment(JAN09, {"p1": 6.0})]
    return out


def test_timers_recompute_what_the_day_bolts_stored(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    store = open_store(f"sqlite:///{tmp_path / 'stats.db'}")
    specs = [ComponentSpec("feed", f"{__name__}:FeedSpout", {"records": records()})]
    specs += [ComponentSpec(n, c) for n, c in [
        ("loginhour", "bolts.login:LoginHourBolt"), ("loginday", "bolts.login:LoginDayBolt"),
        ("createrolehour", "bolts.createrole:CreateRoleHourBolt"),
        ("createroleday", "bolts.createrole:CreateRoleDayBolt"),
        ("payorderuser", "bolts.payment:PayOrderUserBolt"),
        ("activeday", "bolts.active:ActiveDayBolt"), ("activeweek", "bolts.active:ActiveWeekBolt"),
        ("activemonth", "bolts.active:ActiveMonthBolt"),
        ("loginretention", "bolts.retention:LoginRetentionBolt"),
        ("paytraceday", "bolts.paytrace:PayTraceDayBolt")]]
    topology = Topology(specs)
    runner = LocalRunner(topology, settings, store=store).start()
    try:
        report = runner.wait_drained(60)
    finally:
        runner.stop()
    try:
        assert report.problems(topology) == []
        assert sum(report.bolts[t].get("errors", 0) for t in report.bolts) == 0

        def one(coll: str, ts: int) -> dict[str, Any]:
            got = store.find(coll, SERVER, ts_from=ts, ts_to=ts + 1)
            assert len(got) == 1, (coll, ts, got)
            return got[0]

        assert one("activeday", JAN08) == {**SERVER, "ts": JAN08, "ac_user": 4, "new_ac_user": 2,
                                           "new_ac_rate": 50.0, "old_ac_user": 2, "old_ac_rate": 50.0}
        assert one("activeweek", JAN05) == {**SERVER, "ts": JAN05, "ac_user": 5, "new_ac_user": 4,
                                            "new_ac_rate": 80.0, "old_ac_user": 1, "old_ac_rate": 20.0}
        jan = one("activemonth", 1420041600)
        assert (jan["ac_user"], jan["new_ac_user"], jan["old_ac_user"]) == (5, 4, 1)
        ret = one("loginretention", JAN31)
        assert (ret["cohort"], ret["d1"], ret["d1_rate"], ret["d7"], ret["d30"], ret["d30_rate"]) == \
            (4, 3, 75.0, 1, 2, 50.0)
        assert [d["ts"] for d in store.find("loginretention", SERVER)] == [JAN31]
        pay = one("paytraceday", JAN08)
        assert (pay["pay_user"], pay["new_pay_user"], pay["old_pay_user"], pay["d1"], pay["d1_rate"]) == \
            (2, 2, 0, 1, 50.0)
        assert one("paytraceday", JAN09)["old_pay_user"] == 1
    finally:
        store.close()
