"""The timer bolts on a real SQLite store, without sockets.

Each test runs on a SQLite file and on the MongoDB backend over SecantusDB (MongoDB wire
protocol; or $ANALYTICS_TEST_MONGO_URL); it fills the store with what the event bolts write (membership sets and
userfirst / rolefirst / userpay documents), feeds the timer bolt the state
tuples the day bolts emit, calls tick(now) and flush(batch) as the base loop
does, applies the batch, and checks the stored documents exactly.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterable

import pytest

from analytics import testing
from analytics.config import GameSettings, load_settings
from analytics.schema import collections_of
from analytics.store import open_store
from analytics.store.base import Batch, MemberKey, StoreUnavailable
from analytics.tuples import Tuple
from bolts.active import ActiveDayBolt, ActiveMonthBolt, ActiveWeekBolt
from bolts.paytrace import PayTraceDayBolt
from bolts.retention import LoginRetentionBolt
from bolts.timer import RETENTION_OFFSETS, TimerBolt
from tests.mongo_server import mongo_url

pytestmark = pytest.mark.timeout(30)

G, A, P = "dl", "549140c8dbdb67794fc0fa3b", "2001"
SERVER = {"game": G, "area": A, "plat": P}
DAY = 86400
# Asia/Shanghai local midnights
DEC01, DEC31, JAN01, JAN02, JAN05 = 1417363200, 1419955200, 1420041600, 1420128000, 1420387200
JAN08, JAN09, JAN22, JAN31, FEB01, FEB07, MAR02 = (1420646400, 1420732800, 1421856000, 1422633600,
                                                   1422720000, 1423238400, 1425225600)
# America/New_York local midnights around the 2015-03-08 DST change
NY_MAR02, NY_MAR07, NY_MAR08, NY_MAR09 = 1425272400, 1425704400, 1425790800, 1425873600


# -- helpers ----------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.integration)])
def store(request, tmp_path: Path):
    """A real SQLite file; and a database of its own on the MongoDB-wire test server."""
    if request.param == "mongo":
        name = f"analytics_test_{uuid.uuid4().hex[:12]}"
        s = open_store(mongo_url().rstrip("/") + "/" + name)
        yield s
        s.client.drop_database(name)
    else:
        s = open_store(f"sqlite:///{tmp_path / 'stats.db'}")
        yield s
    s.close()


def make(cls: type[TimerBolt], tmp_path: Path, store, **options: Any) -> TimerBolt:
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.games = {"dl": GameSettings("dl", "Asia/Shanghai"), "wsdx": GameSettings("wsdx", "America/New_York")}
    options.setdefault("startup_days", 0)   # the start-up scan has its own test
    return testing.make_bolt(cls, settings, store, **options)


def members(store, set_: str, ts: int, uids: Iterable[str], server: dict = SERVER) -> None:
    b = Batch()
    b.add_members(MemberKey(set_, server["game"], server["area"], server["plat"], ts), uids)
    store.apply(b)


#: The day set a derived first-day collection comes from (analytics.store.base.FIRST_DAYS).
DERIVED = {"userfirst": "login_day", "rolefirst": "createrole_day"}


@pytest.fixture(autouse=True, params=["derived", "stored"])
def first_days(request):
    """Each test twice: first days derived from the day sets (this version), and stored as documents
    the way an older version wrote userfirst/rolefirst (the timers then go through the uids)."""
    global FIRSTS_STORED
    FIRSTS_STORED = request.param == "stored"
    yield request.param


FIRSTS_STORED = False


def firsts(store, coll: str, by_uid: dict[str, int], server: dict = SERVER, **extra: Any) -> None:
    """First days of users: as the event bolts write them (into the day set) or, for `stored`, as documents."""
    b = Batch()
    if coll in DERIVED and not FIRSTS_STORED:
        for uid, ts in by_uid.items():
            b.add_members(MemberKey(DERIVED[coll], server["game"], server["area"], server["plat"], ts), [uid])
    else:
        for uid, ts in by_uid.items():
            b.upsert(coll, {**server, "uid": uid}, min={"ts": ts}, set=extra or None)
    store.apply(b)


def state(topic: str, day: int, server: dict = SERVER, count: int = 1) -> Tuple:
    return Tuple(topic, f"{topic}-{day}", day, {**server, "ts": day, "count": count, "type": topic.split(".")[0]})


def tick(bolt: TimerBolt, store, now: float) -> Batch:
    """What the base does on a tick: tick(now), then flush into one batch, then apply it."""
    bolt.tick(now)
    batch = Batch()
    bolt.flush(batch)
    store.apply(batch)
    return batch


def docs(store, coll: str) -> list[dict[str, Any]]:
    return store.find(coll)


def zero_retention(**nonzero: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in RETENTION_OFFSETS:
        out[f"d{k}"], out[f"d{k}_rate"] = 0, 0.0
    out.update(nonzero)
    return out


# -- active ---------------------------------------------------------------------------------------

def test_seed_example_stored_by_activeday(tmp_path, store):
    uids = [f"u{i}" for i in range(214)]
    members(store, "login_day", JAN08, uids)
    firsts(store, "userfirst", {u: JAN08 for u in uids[:109]})
    firsts(store, "userfirst", {u: DEC31 for u in uids[109:]})
    bolt = make(ActiveDayBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(state("login.day", JAN08, count=214))
    tick(bolt, store, JAN08 + 3600)
    assert docs(store, "activeday") == [{**SERVER, "ts": JAN08, "ac_user": 214, "new_ac_user": 109,
                                         "new_ac_rate": 50.93, "old_ac_user": 105, "old_ac_rate": 49.07}]


def _active_fixture(store) -> None:
    # Jan 2015 in UTC+8: Fri Jan 2 (week of Mon Dec 29), Mon Jan 5, Thu Jan 8 (week of Jan 5); Wed Dec 31.
    members(store, "login_day", DEC31, ["u2"])
    members(store, "login_day", JAN02, ["u6"])
    members(store, "login_day", JAN05, ["u1", "u5"])
    members(store, "login_day", JAN08, ["u1", "u2", "u3", "u4"])
    firsts(store, "userfirst", {"u1": JAN05, "u2": DEC31, "u3": JAN08, "u4": JAN08, "u5": JAN05, "u6": JAN02})


def test_active_day_week_month_exact_and_idempotent(tmp_path, store):
    _active_fixture(store)
    bolts = {cls.collection: make(cls, tmp_path, store, refresh_seconds=None)
             for cls in (ActiveDayBolt, ActiveWeekBolt, ActiveMonthBolt)}
    for bolt in bolts.values():
        for day in (JAN05, JAN08):
            bolt.process(state("login.day", day))
        tick(bolt, store, JAN08 + 3600)
    assert docs(store, "activeday") == [
        {**SERVER, "ts": JAN05, "ac_user": 2, "new_ac_user": 2, "new_ac_rate": 100.0,
         "old_ac_user": 0, "old_ac_rate": 0.0},
        {**SERVER, "ts": JAN08, "ac_user": 4, "new_ac_user": 2, "new_ac_rate": 50.0,
         "old_ac_user": 2, "old_ac_rate": 50.0},
    ]
    # week of Monday Jan 5: u1..u5 active, u2 first seen Dec 31 -> 4 new, 1 old
    assert docs(store, "activeweek") == [
        {**SERVER, "ts": JAN05, "ac_user": 5, "new_ac_user": 4, "new_ac_rate": 80.0,
         "old_ac_user": 1, "old_ac_rate": 20.0},
    ]
    # January: u1..u6 active (u6 on Jan 2), u2 is December's -> 5 new, 1 old
    assert docs(store, "activemonth") == [
        {**SERVER, "ts": JAN01, "ac_user": 6, "new_ac_user": 5, "new_ac_rate": 83.33,
         "old_ac_user": 1, "old_ac_rate": 16.67},
    ]
    before = {c: docs(store, c) for c in bolts}
    for bolt in bolts.values():               # the same state again (a replay) and a second tick
        for day in (JAN05, JAN08):
            bolt.process(state("login.day", day))
        batch = tick(bolt, store, JAN08 + 7200)
        assert len(batch.upserts) == (2 if bolt.period == "day" else 1)
        assert all(u.set and not u.inc for u in batch.upserts)
    assert {c: docs(store, c) for c in bolts} == before
    assert bolts["activeday"].recomputed == 4 and bolts["activeday"].dirty == set()


def test_a_tick_without_dirty_periods_writes_nothing(tmp_path, store):
    _active_fixture(store)
    bolt = make(ActiveDayBolt, tmp_path, store, refresh_seconds=None)
    assert not tick(bolt, store, JAN08)
    assert docs(store, "activeday") == []


def test_active_week_in_new_york_across_dst(tmp_path, store):
    ny = {"game": "wsdx", "area": "5461bb1bec8b9c686a8b4576", "plat": "1059"}
    members(store, "login_day", NY_MAR07, ["a", "b"], ny)     # Saturday
    members(store, "login_day", NY_MAR08, ["b", "c"], ny)     # Sunday, 23 hours long
    members(store, "login_day", NY_MAR09, ["d"], ny)          # Monday: the next week
    firsts(store, "userfirst", {"a": NY_MAR02, "b": NY_MAR07, "c": NY_MAR08, "d": NY_MAR09}, ny)
    bolt = make(ActiveWeekBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(state("login.day", NY_MAR08 + 5 * 3600, ny))  # any ts in the day: normalized to its start
    tick(bolt, store, NY_MAR09)
    assert docs(store, "activeweek") == [
        {**ny, "ts": NY_MAR02, "ac_user": 3, "new_ac_user": 3, "new_ac_rate": 100.0,
         "old_ac_user": 0, "old_ac_rate": 0.0},
    ]


def test_wall_clock_refresh_recomputes_current_periods_of_seen_servers(tmp_path, store):
    _active_fixture(store)
    bolt = make(ActiveDayBolt, tmp_path, store)               # refresh every 300 s (default)
    bolt.process(state("login.day", JAN05))                   # an old day: the server is now known
    now = JAN08 + 12 * 3600
    tick(bolt, store, now)
    assert [d["ts"] for d in docs(store, "activeday")] == [JAN05, JAN08]   # Jan 8 came from the refresh
    members(store, "login_day", JAN08, ["u7"])
    firsts(store, "userfirst", {"u7": JAN08})
    assert not tick(bolt, store, now + 60)                    # nothing dirty, refresh not due
    assert docs(store, "activeday")[1]["ac_user"] == 4
    tick(bolt, store, now + 300)                              # refresh due: today again
    assert docs(store, "activeday")[1] == {**SERVER, "ts": JAN08, "ac_user": 5, "new_ac_user": 3,
                                           "new_ac_rate": 60.0, "old_ac_user": 2, "old_ac_rate": 40.0}


def test_refresh_of_a_quiet_period_writes_no_document(tmp_path, store):
    bolt = make(ActiveMonthBolt, tmp_path, store)
    bolt.process(state("login.day", JAN05))                  # nothing in the store at all
    assert not tick(bolt, store, MAR02)
    assert bolt.recomputed == 2 and docs(store, "activemonth") == []


def test_first_tick_after_a_restart_rescans_recent_days_from_the_store(tmp_path, store):
    _active_fixture(store)
    bolt = make(ActiveDayBolt, tmp_path, store, refresh_seconds=None, startup_days=2)
    now = JAN08 + 12 * 3600                                   # days started since Jan 6 12:00: Jan 8 only
    tick(bolt, store, now)
    assert bolt.servers == {(G, A, P)}
    assert docs(store, "activeday") == [{**SERVER, "ts": JAN08, "ac_user": 4, "new_ac_user": 2,
                                         "new_ac_rate": 50.0, "old_ac_user": 2, "old_ac_rate": 50.0}]
    assert not tick(bolt, store, now + 60)                    # once only
    assert bolt.mark_from_store(DEC31, JAN08) == 3            # by hand: Dec 31, Jan 2, Jan 5
    tick(bolt, store, now + 120)
    assert [d["ts"] for d in docs(store, "activeday")] == [DEC31, JAN02, JAN05, JAN08]


def test_restart_scan_of_retention_uses_createrole_and_login_days(tmp_path, store):
    _retention_fixture(store)
    members(store, "createrole_day", JAN31, ["c1", "c2", "c3", "c4"])
    bolt = make(LoginRetentionBolt, tmp_path, store, refresh_seconds=None, startup_days=2)
    tick(bolt, store, FEB01 + 3600)   # days from Jan 30 01:00 on: createrole Jan 31; logins Jan 31 .. Mar 2
    assert docs(store, "loginretention") == [
        {**SERVER, "ts": JAN31, "cohort": 4, **zero_retention(
            d1=3, d1_rate=75.0, d7=1, d7_rate=25.0, d30=2, d30_rate=50.0)},
        {**SERVER, "ts": FEB01, "cohort": 1, **zero_retention()},   # dirtied by the Feb 7 logins (k=6)
    ]


def test_bad_state_tuple_is_rejected_not_marked(tmp_path, store):
    bolt = make(ActiveDayBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(Tuple("login.day", "x", JAN08, {"game": G, "area": A, "ts": JAN08}))     # no plat
    bolt.process(Tuple("login.day", "y", JAN08, {**SERVER, "ts": "yesterday"}))
    assert bolt.counters.rejected == 2 and bolt.dirty == set() and bolt.servers == set()


def test_store_outage_during_a_tick_keeps_the_periods_dirty(tmp_path, store):
    _active_fixture(store)

    class Flaky:
        def __init__(self, inner, fail: int) -> None:
            self.inner, self.fail = inner, fail

        def bitmap(self, key):
            if self.fail:
                self.fail -= 1
                raise StoreUnavailable("store down (test)")
            return self.inner.bitmap(key)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    bolt = make(ActiveDayBolt, tmp_path, Flaky(store, fail=1), refresh_seconds=None)
    bolt.process(state("login.day", JAN05))
    bolt.process(state("login.day", JAN08))
    with pytest.raises(StoreUnavailable):
        bolt.tick(JAN08)
    assert {k.ts for k in bolt.dirty} == {JAN05, JAN08}
    tick(bolt, store, JAN08 + 60)
    assert [d["ac_user"] for d in docs(store, "activeday")] == [2, 4]


# -- retention ----------------------------------------------------------------------------------

def _retention_fixture(store) -> None:
    firsts(store, "rolefirst", {"c1": JAN31, "c2": JAN31, "c3": JAN31, "c4": JAN31, "x1": FEB01})
    members(store, "login_day", JAN31, ["c1", "c2", "c3", "c4"])
    members(store, "login_day", FEB01, ["c1", "c2", "c3", "x9"])      # D+1 (next month)
    members(store, "login_day", FEB07, ["c1"])                        # D+7
    members(store, "login_day", MAR02, ["c2", "c4", "x1"])            # D+30 (February has 28 days)


def test_login_retention_across_a_month_boundary(tmp_path, store):
    _retention_fixture(store)
    bolt = make(LoginRetentionBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(state("login.day", MAR02))       # dirties Jan 31 (k=30), Feb 16 (k=14), Feb 23..Mar 1
    tick(bolt, store, MAR02 + 3600)
    assert bolt.recomputed == len(RETENTION_OFFSETS)
    assert docs(store, "loginretention") == [{**SERVER, "ts": JAN31, "cohort": 4, **zero_retention(
        d1=3, d1_rate=75.0, d7=1, d7_rate=25.0, d30=2, d30_rate=50.0)}]
    # a new role on Feb 1 dirties cohort Feb 1 itself; a login on Feb 1 dirties Jan 31 again (same figures)
    bolt.process(state("createrole.day", FEB01))
    bolt.process(state("login.day", FEB01))
    tick(bolt, store, MAR02 + 7200)
    assert docs(store, "loginretention") == [
        {**SERVER, "ts": JAN31, "cohort": 4, **zero_retention(
            d1=3, d1_rate=75.0, d7=1, d7_rate=25.0, d30=2, d30_rate=50.0)},
        {**SERVER, "ts": FEB01, "cohort": 1, **zero_retention()},   # x1 logs in on Mar 2 = Feb 1 + 29: no offset
    ]


def test_login_retention_is_idempotent(tmp_path, store):
    _retention_fixture(store)
    bolt = make(LoginRetentionBolt, tmp_path, store, refresh_seconds=None)
    for _ in range(2):
        bolt.process(state("login.day", FEB01))
        bolt.process(state("createrole.day", JAN31))
        tick(bolt, store, MAR02)
        assert docs(store, "loginretention") == [{**SERVER, "ts": JAN31, "cohort": 4, **zero_retention(
            d1=3, d1_rate=75.0, d7=1, d7_rate=25.0, d30=2, d30_rate=50.0)}]


def test_login_retention_refresh_covers_today_and_its_cohorts(tmp_path, store):
    bolt = make(LoginRetentionBolt, tmp_path, store)
    bolt.process(state("createrole.day", JAN05))
    bolt.tick(FEB01 + 3600)
    assert {k.ts for k in bolt.dirty} == set()              # all recomputed
    assert bolt.recomputed == 1 + 1 + len(RETENTION_OFFSETS)  # Jan 5, today, today-k


# -- paytrace ---------------------------------------------------------------------------------------

def test_paytrace_new_and_returning_payers_and_their_retention(tmp_path, store):
    members(store, "pay_day", JAN08, ["p1", "p2", "p3", "p4"])
    members(store, "pay_day", JAN09, ["p1", "p3"])
    members(store, "pay_day", JAN22, ["p2"])                           # D+14
    firsts(store, "userpay", {"p1": JAN08, "p2": JAN08, "p3": JAN01, "p4": DEC01}, amount=1.0, times=1)
    bolt = make(PayTraceDayBolt, tmp_path, store, refresh_seconds=None)
    bolt.process(state("payorderuser.day", JAN09))                     # dirties Jan 9 and Jan 8 (k=1), ...
    tick(bolt, store, JAN09 + 3600)
    expected = [
        {**SERVER, "ts": JAN08, "pay_user": 4, "new_pay_user": 2, "old_pay_user": 2,
         **zero_retention(d1=1, d1_rate=50.0, d14=1, d14_rate=50.0)},
        {**SERVER, "ts": JAN09, "pay_user": 2, "new_pay_user": 0, "old_pay_user": 2, **zero_retention()},
    ]
    assert docs(store, "paytraceday") == expected
    bolt.process(state("payorderuser.day", JAN09))
    bolt.process(state("payorderuser.day", JAN08))
    tick(bolt, store, JAN09 + 7200)
    assert docs(store, "paytraceday") == expected


# -- catalogue ----------------------------------------------------------------------------------------

def test_written_fields_are_the_declared_ones(tmp_path, store):
    cat = collections_of(["bolts.active", "bolts.retention", "bolts.paytrace"])
    assert sorted(cat) == ["activeday", "activemonth", "activeweek", "loginretention", "paytraceday"]
    _active_fixture(store)
    _retention_fixture(store)
    members(store, "pay_day", JAN08, ["p1"])
    firsts(store, "userpay", {"p1": JAN08})
    for cls, topic, day in ((ActiveDayBolt, "login.day", JAN08), (ActiveWeekBolt, "login.day", JAN08),
                            (ActiveMonthBolt, "login.day", JAN08), (LoginRetentionBolt, "login.day", FEB01),
                            (PayTraceDayBolt, "payorderuser.day", JAN08)):
        bolt = make(cls, tmp_path, store, refresh_seconds=None)
        assert cls.topics and topic in cls.topics and bolt.name == cls.collection
        bolt.process(state(topic, day))
        tick(bolt, store, day)
        written = docs(store, cls.collection)
        assert written, cls.collection
        c = cat[cls.collection]
        for d in written:
            assert set(d) == set(c.key) | set(c.fields), cls.collection


def test_set_cache_before_grows_from_the_last_answer_and_matches_the_store(tmp_path, store):
    _active_fixture(store)
    from bolts.timer import SetCache
    sets = SetCache(store, 8)
    for ts in (DEC31, JAN02, JAN05, JAN08, JAN09, JAN02, FEB01, DEC01):   # later, then earlier again
        assert sets.before("login_day", G, A, P, ts) == store.before("login_day", G, A, P, ts), ts
    assert sets.before("login_day", G, A, P, JAN09) == store.uid_bitmap(G, ["u1", "u2", "u3", "u4", "u5", "u6"])
