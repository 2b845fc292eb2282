"""One contract suite for every store backend.

Backends: "sqlite" (a real file in tmp_path) and "mongo": the MongoDB backend over a
real wire-protocol server, SecantusDB (MongoDB wire protocol, started once for the
session by tests/mongo_server.py; not MongoDB), or the real MongoDB that
ANALYTICS_TEST_MONGO_URL points at when set. Each test gets a fresh store (its own
database); `reopen()` gives a new store object over the same data (same SQLite file;
same database).
"""
from __future__ import annotations

import socket
import sqlite3
import time
import uuid
from typing import Callable

import pytest

from analytics.store import Batch, MemberKey, QueryError, Store, StoreError, StoreUnavailable, open_store
from analytics.store.mongo import MongoStore
from analytics.store.sqlite import SQLiteStore
from tests.mongo_server import mongo_url

BACKENDS = ["sqlite", pytest.param("mongo", marks=pytest.mark.integration)]

K = {"game": "dl", "area": "1", "plat": "7", "ts": 1420646400}
DAY = 86400


class Clock:
    """A settable clock for seen_at stamps (stores take `clock=`)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock() -> Clock:
    # Near real time: a server's TTL monitor may delete far-past stamps while a test runs.
    return Clock(time.time() - 1000)


@pytest.fixture
def reopen(backend: str, tmp_path, clock: Clock) -> Callable[[], Store]:
    """A factory of stores over the same storage; every store it made is closed afterwards."""
    made: list[Store] = []
    cleanup: list[Callable[[], None]] = []
    if backend == "sqlite":
        def make(**options) -> Store:
            return SQLiteStore(tmp_path / "stats.db", clock=clock, **options)
    else:
        import pymongo
        url = mongo_url()
        name = f"analytics_test_{uuid.uuid4().hex[:12]}"
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=3000)
        cleanup.append(lambda: (client.drop_database(name), client.close()))

        def make(**options) -> Store:
            return MongoStore(client, name, url=url, owns_client=False, clock=clock, **options)

    def opener(**options) -> Store:
        """A new store object over the same storage; `options` go to its constructor (part_bits, cache_bytes)."""
        s = make(**options)
        s.setup()
        made.append(s)
        return s
    yield opener
    for s in made:
        try:
            s.close()
        except Exception:
            pass
    for c in cleanup:
        c()


@pytest.fixture
def store(reopen: Callable[[], Store]) -> Store:
    return reopen()


def doc(store: Store, coll: str = "login_day", key: dict = K) -> dict:
    docs = store.find(coll, key)
    assert len(docs) == 1, docs
    return docs[0]


# -- upsert arithmetic -------------------------------------------------------

def test_inc_accumulates_over_flushes(store: Store) -> None:
    for n in (2, 3, 5):
        b = Batch()
        b.upsert("login_day", K, inc={"count": n, "amount": n * 1.5})
        store.apply(b)
    assert doc(store) == {**K, "count": 10, "amount": 15.0}


def test_set_max_min_and_set_on_insert(store: Store) -> None:
    b = Batch()
    b.upsert("user", K, set={"name": "a"}, set_on_insert={"first": "x"}, max={"hi": 5}, min={"lo": 5})
    store.apply(b)
    assert doc(store, "user") == {**K, "name": "a", "first": "x", "hi": 5, "lo": 5}
    b = Batch()
    b.upsert("user", K, set={"name": "b"}, set_on_insert={"first": "y"}, max={"hi": 3}, min={"lo": 9})
    store.apply(b)
    assert doc(store, "user") == {**K, "name": "b", "first": "x", "hi": 5, "lo": 5}
    b = Batch()
    b.upsert("user", K, max={"hi": 8, "new_hi": 1}, min={"lo": 2})
    store.apply(b)
    assert doc(store, "user") == {**K, "name": "b", "first": "x", "hi": 8, "lo": 2, "new_hi": 1}


def test_same_field_in_two_operators_is_rejected(store: Store) -> None:
    """MongoDB rejects {$inc: {x}, $setOnInsert: {x}}: so must every backend."""
    with pytest.raises(StoreError, match="'count' appears in both"):
        Batch().upsert("login_day", K, inc={"count": 1}, set_on_insert={"count": 0})
    b = Batch()
    b.upsert("login_day", K, inc={"count": 1})
    b.upserts[0].set = {"count": 7}          # built behind Batch.upsert's back: apply checks again
    b.mark_seen("login", ["r1"])
    with pytest.raises(StoreError, match="'count' appears in both"):
        store.apply(b)
    assert store.find("login_day") == []
    assert store.unseen("login", ["r1"]) == {"r1"}


def test_setting_a_key_field_to_its_own_value_is_allowed(store: Store) -> None:
    b = Batch()
    b.upsert("user", K, set={"game": "dl", "name": "a"}, set_on_insert={"ts": K["ts"]})
    store.apply(b)
    assert doc(store, "user") == {**K, "name": "a"}


def test_bad_upserts_are_rejected(store: Store) -> None:
    for kwargs, msg in [(dict(collection="members", key=K, inc={"n": 1}), "bad collection"),
                        (dict(collection="c", key={}, inc={"n": 1}), "empty key"),
                        (dict(collection="c", key=K, set={"ts": 1}), "part of the key"),
                        (dict(collection="c", key=K, max={"ts": K["ts"]}), "part of the key"),
                        (dict(collection="c", key=K, inc={"a.b": 1}), "bad field name"),
                        (dict(collection="c", key=K, inc={"n": "1"}), "non-number")]:
        with pytest.raises(StoreError, match=msg):
            Batch().upsert(kwargs.pop("collection"), kwargs.pop("key"), **kwargs)


# -- memberships -------------------------------------------------------------

def test_members_and_distinct_counts(store: Store) -> None:
    mk = MemberKey("login_day", "dl", "1", "7", K["ts"])
    b = Batch()
    b.add_members(mk, ["u1", "u2", "u2", "u3"], count_into=("login_day", K, "users"))
    b.upsert("login_day", K, inc={"count": 4})
    store.apply(b)
    assert doc(store) == {**K, "count": 4, "users": 3}
    b = Batch()
    b.add_members(mk, ["u3", "u4"], count_into=("login_day", K, "users"))
    b.add_members(mk, ["u4", "u5"], count_into=("login_day", K, "users"))   # same key twice in one batch
    store.apply(b)
    assert doc(store) == {**K, "count": 4, "users": 5}
    assert store.members(mk) == {"u1", "u2", "u3", "u4", "u5"}
    assert store.count_members(mk) == 5
    other = MemberKey("login_day", "dl", "1", "7", K["ts"], sub="vip")
    assert store.members(other) == set() and store.count_members(other) == 0


def test_members_between_and_member_keys(store: Store) -> None:
    b = Batch()
    for day, users in enumerate([["a", "b"], ["b", "c"], ["d"], ["e"]]):
        b.add_members(MemberKey("login_day", "dl", "1", "7", K["ts"] + day * DAY), users)
    b.add_members(MemberKey("login_day", "dl", "1", "7", K["ts"], sub="vip"), ["z"])
    b.add_members(MemberKey("login_day", "dl", "2", "7", K["ts"]), ["y"])
    b.add_members(MemberKey("pay_day", "dl", "1", "7", K["ts"]), ["p"])
    store.apply(b)
    t = K["ts"]
    assert store.members_between("login_day", "dl", "1", "7", t, t + 2 * DAY) == {"a", "b", "c", "z"}
    assert store.members_between("login_day", "dl", "1", "7", t, t + 2 * DAY, sub="") == {"a", "b", "c"}
    assert store.members_between("login_day", "dl", "1", "7", t + DAY, t + 3 * DAY) == {"b", "c", "d"}
    assert store.members_between("login_day", "dl", "1", "7", t, t) == set()
    keys = store.member_keys("login_day")
    assert len(keys) == 6
    assert set(store.member_keys("login_day", area="1", ts_from=t + DAY, ts_to=t + 3 * DAY)) == {
        MemberKey("login_day", "dl", "1", "7", t + DAY), MemberKey("login_day", "dl", "1", "7", t + 2 * DAY)}
    assert store.member_keys("login_day", area="2") == [MemberKey("login_day", "dl", "2", "7", t)]
    assert store.member_keys("pay_day", game="xx") == []


def test_userlist_round_trip_of_numeric_and_other_uids(store: Store, reopen: Callable[[], Store]) -> None:
    """Small canonical decimals are their own ids; every other string goes through uid_map and comes back as it was."""
    from analytics.query import query
    uids = {"0", "7", "10000001", "3000000001", "4026531839", "4026531840", "9999999999", "042", "-1", "u1", "名前", "a b", "7.0"}
    day = {"game": "dl", "area": "1", "plat": "7", "ts": K["ts"]}
    b = Batch()
    b.add_members(MemberKey("login_day", "dl", "1", "7", K["ts"]), uids, count_into=("loginday", day, "count"))
    b.add_members(MemberKey("login_day", "xx", "1", "7", K["ts"]), ["u1", "zz"])     # another game's dictionary
    store.apply(b)
    mk = MemberKey("login_day", "dl", "1", "7", K["ts"])
    assert store.members(mk) == uids and store.count_members(mk) == len(uids)
    assert store.members(MemberKey("login_day", "xx", "1", "7", K["ts"])) == {"u1", "zz"}
    again = reopen()                                        # a cold dictionary cache
    assert again.members(mk) == uids
    [got] = query(again, "loginday", game="dl", userlist=True)
    assert got["count"] == len(uids) and got["userlist"] == sorted(uids)
    assert len(again.uid_bitmap("dl", ["u1", "042", "7", "never-seen"])) == 3
    assert again.bitmap(mk) & again.uid_bitmap("dl", ["u1", "7"]) == again.uid_bitmap("dl", ["7", "u1"])


def test_a_set_spanning_several_parts(reopen: Callable[..., Store]) -> None:
    """part_bits=8: a part holds 256 ids, so these members spread over many part rows/documents."""
    store = reopen(part_bits=8)
    mk = MemberKey("login_day", "dl", "1", "7", K["ts"])
    first = {str(i) for i in range(0, 3000, 7)} | {"u1", "u2"}
    b = Batch()
    b.add_members(mk, first, count_into=("loginday", K, "count"))
    store.apply(b)
    second = {str(i) for i in range(1, 3000, 11)} | {"u2", "u3"}
    b = Batch()
    b.add_members(mk, second, count_into=("loginday", K, "count"))
    store.apply(b)
    everyone = first | second
    assert store.count_members(mk) == len(everyone) and doc(store, "loginday")["count"] == len(everyone)
    assert store.members(mk) == everyone
    assert store.member_keys("login_day") == [mk]
    other = reopen(part_bits=8)
    assert other.members_between("login_day", "dl", "1", "7", K["ts"], K["ts"] + DAY) == everyone
    assert len(other.bitmap_between("login_day", "dl", "1", "7", K["ts"], K["ts"] + DAY)) == len(everyone)


def test_two_writers_with_stale_caches_lose_no_member(reopen: Callable[..., Store]) -> None:
    """Two store objects over the same file/database (a partition hand-over; a replay beside the live
    topology) write the same period in turns, each with a cache that misses the other's writes."""
    a, b_ = reopen(part_bits=8), reopen(part_bits=8)
    mk = MemberKey("login_day", "dl", "1", "7", K["ts"])
    want: set[str] = set()
    for i, writer in enumerate([a, b_, a, b_, a, a, b_]):
        users = {str(i * 100 + j) for j in range(5)} | {f"u{i}", "u0", "300"}
        want |= users
        b = Batch()
        b.add_members(mk, users, count_into=("loginday", K, "count"))
        writer.apply(b)
    assert a.members(mk) == want and b_.members(mk) == want
    assert a.count_members(mk) == len(want) and doc(a, "loginday")["count"] == len(want)
    # A writer whose cache says "nothing new" writes nothing, and its lagging count never lowers the stored one.
    b = Batch()
    b.add_members(mk, {"0", "u0"}, count_into=("loginday", K, "count"))
    a.apply(b)
    assert doc(a, "loginday")["count"] == len(want)


def test_a_rolled_back_apply_leaves_the_cache_consistent(store: Store) -> None:
    """If the cache kept members of a rolled-back batch, the next apply would think them stored and drop them."""
    mk = MemberKey("login_day", "dl", "1", "7", K["ts"])
    b = Batch()
    b.add_members(mk, ["1", "u1"])
    b.upsert("login_day", K, set={"count": "many"})
    store.apply(b)
    b = Batch()
    b.add_members(mk, ["2", "u2"], count_into=("loginday", K, "count"))
    b.upsert("login_day", K, inc={"count": 1})               # fails: $inc of a string
    with pytest.raises(StoreError):
        store.apply(b)
    if not getattr(store, "atomic"):
        pytest.skip("no transaction: the failed apply's members are stored (the documented window)")
    assert store.members(mk) == {"1", "u1"}
    b = Batch()
    b.add_members(mk, ["2", "u2"], count_into=("loginday", K, "count"))
    store.apply(b)
    assert store.members(mk) == {"1", "2", "u1", "u2"} and doc(store, "loginday")["count"] == 4


def _replayable(n: int) -> Batch:
    b = Batch()
    for day in range(3):
        key = {**K, "ts": K["ts"] + day * DAY}
        b.upsert("loginday", key, set={"type": "login"})
        b.add_members(MemberKey("login_day", "dl", "1", "7", key["ts"]), [str(i) for i in range(n)] + ["u1", "u2"],
                      count_into=("loginday", key, "count"))
    return b


def test_a_replay_of_stored_members_writes_nothing(store: Store, reopen: Callable[[], Store]) -> None:
    store.apply(_replayable(500))
    writes = store.op_counts["writes"]
    # 3 sets of 2 parts each (small decimals, dictionary ids) and their span set (2 parts),
    # 3 documents, 2 uid_map rows (+ a sequence document)
    assert 0 < writes <= 3 * 2 + 2 + 3 + 2 + 1
    store.apply(_replayable(500))                      # the same again, hot cache: nothing to write
    assert store.op_counts["writes"] == writes
    cold = reopen()                                    # a new process (cold cache): reads, and still no write
    reads = cold.op_counts["reads"]
    cold.apply(_replayable(500))
    assert cold.op_counts["writes"] == 0 and cold.op_counts["reads"] > reads
    assert cold.count_members(MemberKey("login_day", "dl", "1", "7", K["ts"])) == 502


#: The SQLite schema of the member rows before bitmaps (analytics 7dcb686), verbatim.
OLD_SQLITE_MEMBERS = """
CREATE TABLE IF NOT EXISTS member_sets (
    id INTEGER PRIMARY KEY,
    "set" TEXT NOT NULL, game TEXT NOT NULL, area TEXT NOT NULL, plat TEXT NOT NULL,
    ts INTEGER NOT NULL, sub TEXT NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,
    UNIQUE ("set", game, area, plat, ts, sub)
);
CREATE INDEX IF NOT EXISTS member_sets_ts ON member_sets ("set", ts);
CREATE TABLE IF NOT EXISTS members (
    set_id INTEGER NOT NULL REFERENCES member_sets (id), member TEXT NOT NULL,
    PRIMARY KEY (set_id, member)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS members_flat AS
    SELECT s."set", s.game, s.area, s.plat, s.ts, s.sub, m.member
    FROM members m JOIN member_sets s ON s.id = m.set_id;
"""
OLD_SETS = {MemberKey("login_day", "dl", "1", "7", K["ts"]): {"1", "2", "u1", "u2", "042"},
            MemberKey("login_day", "dl", "1", "7", K["ts"] + DAY): {"2", "3", "u2"},
            MemberKey("shop_day", "dl", "1", "7", K["ts"], "item9"): {"u3"}}


def _write_old_members(store: Store, path) -> None:
    """Member rows/documents exactly as the version before bitmaps wrote them."""
    if isinstance(store, SQLiteStore):
        db = sqlite3.connect(path)
        db.executescript(OLD_SQLITE_MEMBERS)
        for i, (k, users) in enumerate(OLD_SETS.items(), 1):
            db.execute("INSERT INTO member_sets VALUES (?,?,?,?,?,?,?,?)",
                       (i, k.set, k.game, k.area, k.plat, k.ts, k.sub, len(users)))
            db.executemany("INSERT INTO members VALUES (?,?)", [(i, u) for u in users])
        db.commit()
        db.close()
    else:
        head = ("set", "game", "area", "plat", "ts", "sub")
        for k, users in OLD_SETS.items():
            key = dict(zip(head, (k.set, k.game, k.area, k.plat, k.ts, k.sub)))
            store.db.member_sets.insert_one(dict(key))
            store.db.members.insert_many([{**key, "member": u} for u in users])


def test_a_store_written_before_bitmaps_is_migrated_on_open(store: Store, reopen: Callable[[], Store], tmp_path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Old member rows become bitmaps in chunks; a crash mid-migration is finished by the next open."""
    b = Batch()
    b.add_members(MemberKey("login_day", "dl", "1", "7", K["ts"]), ["9"])      # a set that is a bitmap already
    store.apply(b)
    _write_old_members(store, tmp_path / "stats.db")
    calls = {"n": 0}
    cls = type(store)
    real = cls._write_sets if cls is SQLiteStore else cls.apply

    def crash_on_second_chunk(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash mid-migration")
        return real(self, *a, **kw)
    monkeypatch.setattr(cls, "_write_sets" if cls is SQLiteStore else "apply", crash_on_second_chunk)
    with pytest.raises(RuntimeError, match="mid-migration"):
        store.migrate(chunk=4)
    monkeypatch.undo()
    again = reopen()                       # setup() goes on where the crash stopped
    want = {k: set(v) for k, v in OLD_SETS.items()}
    want[MemberKey("login_day", "dl", "1", "7", K["ts"])].add("9")
    for k, users in want.items():
        assert again.members(k) == users and again.count_members(k) == len(users), k
    assert set(again.member_keys("login_day")) | set(again.member_keys("shop_day")) == set(want)
    assert again.migrate() == 0            # nothing left, nothing done twice
    if isinstance(again, SQLiteStore):
        names = {r[0] for r in again._read("SELECT name FROM sqlite_master")}
        assert not {"members", "member_sets", "members_flat"} & names
    else:
        assert not {"members", "member_sets"} & set(again.db.list_collection_names())


def test_sqlite_file_of_the_previous_version_opens_with_its_members(tmp_path) -> None:
    """A file made only by the previous version's SQL (member rows, no bitmaps table) opens as before."""
    path = tmp_path / "previous.db"
    _write_old_members(SQLiteStore.__new__(SQLiteStore), path)
    with open_store(f"sqlite:///{path}") as s:
        for k, users in OLD_SETS.items():
            assert s.members(k) == users and s.count_members(k) == len(users)
        b = Batch()
        b.add_members(MemberKey("login_day", "dl", "1", "7", K["ts"]), ["u1", "u9"])
        s.apply(b)
        assert s.count_members(MemberKey("login_day", "dl", "1", "7", K["ts"])) == 6


def test_first_days_are_derived_from_the_day_sets_whatever_the_order(store: Store) -> None:
    """userfirst is the first login_day set that has the user: a late record moves it earlier; across
    spans (40 days > 2**21 s); merged with documents an older version stored (earliest wins)."""
    t = K["ts"]
    for day, users in ((3, ["a", "b"]), (1, ["b"]), (45, ["a", "c", "7"]), (50, ["d"])):   # day 1 arrives late
        b = Batch()
        b.add_members(MemberKey("login_day", "dl", "1", "7", t + day * DAY), users)
        store.apply(b)
    first = {d["uid"]: (d["ts"] - t) // DAY for d in store.find("userfirst", {"game": "dl"})}
    assert first == {"a": 3, "b": 1, "c": 45, "7": 45, "d": 50}
    assert {d["uid"] for d in store.find("userfirst", ts_from=t + 3 * DAY, ts_to=t + 50 * DAY)} == {"a", "c", "7"}
    assert store.find("userfirst", {"uid": "c"}) == [{"game": "dl", "area": "1", "plat": "7", "uid": "c",
                                                      "ts": t + 45 * DAY}]
    b = Batch()       # what an older version stored: one document per user
    b.upsert("userfirst", {"game": "dl", "area": "1", "plat": "7", "uid": "c"}, min={"ts": t + 2 * DAY})
    b.upsert("userfirst", {"game": "dl", "area": "1", "plat": "7", "uid": "old"}, min={"ts": t})
    store.apply(b)
    assert {d["uid"] for d in store.find("userfirst", ts_from=t + 3 * DAY, ts_to=t + 50 * DAY)} == {"a", "7"}
    assert {d["uid"]: (d["ts"] - t) // DAY for d in store.find("userfirst", ts_to=t + 3 * DAY)} == {
        "b": 1, "c": 2, "old": 0}
    assert store.find("rolefirst") == [] and store.find("userfirst", {"game": "xx"}) == []
    assert len(store.before("login_day", "dl", "1", "7", t + 45 * DAY)) == 2


def test_a_derived_first_day_find_sorts_by_a_non_scalar_field(store: Store) -> None:
    """Sub-documents and arrays sort after strings and before bools (MongoDB's order), not a crash."""
    t = K["ts"]
    b = Batch()
    b.add_members(MemberKey("login_day", "dl", "1", "7", t), ["a", "b", "c", "d"])
    server = {"game": "dl", "area": "1", "plat": "7"}
    for uid, info in (("a", {"k": 2}), ("b", "text"), ("c", {"k": 1}), ("d", True)):
        b.upsert("userfirst", {**server, "uid": uid}, min={"ts": t}, set={"info": info})
    store.apply(b)
    got = store.find("userfirst", sort=("info",))
    assert [d["uid"] for d in got] == ["b", "c", "a", "d"]
    assert [d["uid"] for d in store.find("userfirst", sort=("-info",), limit=2)] == ["d", "a"]


def test_span_sets_missing_from_an_earlier_bitmap_store_are_built_on_open(store: Store,
                                                                          reopen: Callable[[], Store]) -> None:
    t = K["ts"]
    for day, users in ((0, ["a"]), (40, ["a", "b"])):
        b = Batch()
        b.add_members(MemberKey("login_day", "dl", "1", "7", t + day * DAY), users)
        store.apply(b)
    if isinstance(store, SQLiteStore):       # as a store written before span sets existed
        with store._transaction() as db:
            db.execute("DELETE FROM bitmaps WHERE \"set\" = 'login_day_span'")
    else:
        store.db.bitmaps.delete_many({"set": "login_day_span"})
    assert store.member_keys("login_day_span") == []
    again = reopen()
    assert len(again.member_keys("login_day_span")) == 2
    assert {d["uid"] for d in again.find("userfirst", ts_from=t + 40 * DAY)} == {"b"}
    assert again.build_spans() == 0


# -- dedupe --------------------------------------------------------------------

def test_unseen_across_flushes_and_reopen(store: Store, reopen: Callable[[], Store]) -> None:
    assert store.unseen("login", ["r1", "r2"]) == {"r1", "r2"}
    b = Batch()
    b.mark_seen("login", ["r1"])
    store.apply(b)
    b = Batch()
    b.mark_seen("login", ["r2", "r1"])
    store.apply(b)
    assert store.unseen("login", ["r1", "r2", "r3"]) == {"r3"}
    assert store.unseen("signup", ["r1"]) == {"r1"}                 # scopes are independent
    many = [f"id{i}" for i in range(1200)]                          # more than one IN chunk
    b = Batch()
    b.mark_seen("login", many[::100])
    store.apply(b)
    store.close()
    again = reopen()     # sqlite: same file; mongo: the same database
    assert again.unseen("login", ["r1", "r2", "r3"]) == {"r3"}
    assert again.unseen("login", many) == set(many) - set(many[::100])


def _flush(store: Store, records: list[tuple[str, str]]) -> None:
    """What a login bolt does: count only unseen records, then mark them seen in the same batch."""
    fresh = store.unseen("login", [rid for rid, _ in records])
    b = Batch()
    users = {u for rid, u in records if rid in fresh}
    b.upsert("login_day", K, inc={"count": len(fresh)})
    b.add_members(MemberKey("login_day", "dl", "1", "7", K["ts"]), users, count_into=("login_day", K, "users"))
    b.mark_seen("login", fresh)
    store.apply(b)


def test_crash_between_writes_then_replay(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [("r1", "u1"), ("r2", "u1"), ("r3", "u2")]
    _flush(store, records[:1])
    assert doc(store) == {**K, "count": 1, "users": 1}

    def crash(*a: object) -> None:
        raise RuntimeError("simulated crash before the seen marks")
    monkeypatch.setattr(store, "_write_seen", crash)
    with pytest.raises(RuntimeError):
        _flush(store, records)
    monkeypatch.undo()
    if getattr(store, "atomic"):
        # One transaction (SQLite; MongoDB replica set): nothing of the failed batch is visible.
        assert doc(store) == {**K, "count": 1, "users": 1}
        assert store.unseen("login", ["r1", "r2", "r3"]) == {"r2", "r3"}
    else:
        # MongoDB without a replica set: the documented crash window.
        # Members and counts are in (idempotent); $inc is in but the seen marks are not.
        assert doc(store) == {**K, "count": 3, "users": 2}
        assert store.unseen("login", ["r1", "r2", "r3"]) == {"r2", "r3"}
    _flush(store, records)          # replay everything from the disk log
    _flush(store, records)          # and once more: a no-op
    if getattr(store, "atomic"):
        assert doc(store) == {**K, "count": 3, "users": 2}      # exact
    else:
        assert doc(store) == {**K, "count": 5, "users": 2}      # r2, r3 counted twice: the window


def test_failed_apply_raises_store_error(store: Store, backend: str) -> None:
    b = Batch()
    b.upsert("login_day", K, set={"count": "many"})
    store.apply(b)
    b = Batch()
    b.add_members(MemberKey("login_day", "dl", "1", "7", K["ts"]), ["u1"])
    b.upsert("login_day", K, inc={"count": 1})                     # $inc on a string: MongoDB refuses too
    b.mark_seen("login", ["r1"])
    with pytest.raises(StoreError):
        store.apply(b)
    assert doc(store)["count"] == "many"
    if getattr(store, "atomic"):
        assert store.count_members(MemberKey("login_day", "dl", "1", "7", K["ts"])) == 0
        assert store.unseen("login", ["r1"]) == {"r1"}


# -- queries -------------------------------------------------------------------

def _fill(store: Store) -> None:
    b = Batch()
    for game in ("dl", "xx"):
        for area in ("1", "2"):
            for day in range(5):
                key = {"game": game, "area": area, "plat": "7", "ts": K["ts"] + day * DAY}
                b.upsert("login_day", key, inc={"count": day * 10 + int(area)}, set={"type": "login"})
    store.apply(b)


def test_find_by_key_fields_and_time_range(store: Store) -> None:
    _fill(store)
    t = K["ts"]
    got = store.find("login_day", {"game": "dl", "area": "1"}, ts_from=t + DAY, ts_to=t + 3 * DAY)
    assert got == [{"game": "dl", "area": "1", "plat": "7", "ts": t + DAY, "count": 11, "type": "login"},
                   {"game": "dl", "area": "1", "plat": "7", "ts": t + 2 * DAY, "count": 21, "type": "login"}]
    assert len(store.find("login_day", {"game": "dl"})) == 10
    assert len(store.find("login_day", {"plat": "7", "type": "login"})) == 20
    assert store.find("login_day", {"plat": 7}) == []                   # types matter: "7" != 7
    assert store.find("login_day", {"game": "nope"}) == []
    assert store.find("nothing_here") == []
    assert [d["ts"] for d in store.find("login_day", {"game": "xx", "area": "2"}, ts_from=t + 4 * DAY)] == [t + 4 * DAY]


def test_find_sort_and_limit(store: Store) -> None:
    _fill(store)
    top = store.find("login_day", {"game": "dl"}, sort=("-count",), limit=3)
    assert [d["count"] for d in top] == [42, 41, 32]
    by_ts = store.find("login_day", {"game": "dl", "area": "2"}, sort=("ts",))
    assert [d["ts"] for d in by_ts] == [K["ts"] + i * DAY for i in range(5)]
    two_keys = store.find("login_day", {"game": "dl"}, sort=("-ts", "area"), limit=4)
    assert [(d["ts"] - K["ts"]) // DAY for d in two_keys] == [4, 4, 3, 3]
    assert [d["area"] for d in two_keys] == ["1", "2", "1", "2"]


@pytest.mark.parametrize("where, shown", [
    ({"$where": "sleep(1000)"}, "'$where'"),
    ({"game": {"$ne": "x"}}, "{'$ne': 'x'}"),
    ({"data.acct": "a"}, "'data.acct'"),
    ({"": "a"}, "''"),
    ({"game": ["dl"]}, "['dl']"),
    ({"game": None}, "None"),
    ({1: "a"}, "1"),
])
def test_where_rejects_operators_and_paths(store: Store, where: dict, shown: str) -> None:
    with pytest.raises(QueryError) as e:
        store.find("login_day", where)
    assert shown in str(e.value)


def test_bad_sort_and_limit_are_query_errors(store: Store) -> None:
    with pytest.raises(QueryError, match="sort"):
        store.find("login_day", sort=("$natural",))
    with pytest.raises(QueryError, match="limit"):
        store.find("login_day", limit=-1)


# -- housekeeping ----------------------------------------------------------------

def test_purge_seen(store: Store, clock: Clock) -> None:
    t0 = clock.now
    b = Batch()
    b.mark_seen("login", ["old1", "old2"])
    store.apply(b)
    clock.now = t0 + 500
    b = Batch()
    b.mark_seen("login", ["new1"])
    b.mark_seen("signup", ["old1"])
    store.apply(b)
    if isinstance(store, SQLiteStore):
        store.purge_chunk = 1               # exercise the chunked purge loop
    assert store.purge_seen(int(t0) + 100) == 2
    assert store.unseen("login", ["old1", "old2", "new1"]) == {"old1", "old2"}
    assert store.unseen("signup", ["old1"]) == set()
    assert store.purge_seen(int(t0) + 100) == 0


def test_empty_batch_is_a_no_op(store: Store) -> None:
    store.apply(Batch())
    assert store.find("login_day") == []


# -- outages and URLs (backend-specific, no server needed) ------------------------------

def test_sqlite_locked_database_is_unavailable(tmp_path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, busy_timeout_ms=100)
    store.setup()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    b = Batch()
    b.upsert("login_day", K, inc={"count": 1})
    try:
        t = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            store.apply(b)
        assert time.monotonic() - t < 2
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.apply(b)                   # the lock is gone: the same batch goes through
    assert doc(store)["count"] == 1
    store.close()


def test_sqlite_writer_waits_for_a_lock_released_in_time(tmp_path) -> None:
    """Another connection's write lock is waited for (busy_timeout_ms), not failed on at once."""
    import threading
    path = tmp_path / "busy.db"
    store = SQLiteStore(path, busy_timeout_ms=5000)
    store.setup()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    b = Batch()
    b.upsert("login_day", K, inc={"count": 1})
    t = time.monotonic()
    store.apply(b)
    waited = time.monotonic() - t
    release.join()
    other.close()
    assert 0.2 < waited < 2, waited        # waited for the lock, and got it soon after it was released
    assert doc(store)["count"] == 1
    store.close()


def test_sqlite_without_json_functions_writes_the_same(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where SQLite lacks json_each, members and documents go through executemany and IN lists."""
    import analytics.store.sqlite as sqlite_store
    monkeypatch.setattr(sqlite_store, "_HAS_JSON", False)
    store = SQLiteStore(tmp_path / "nojson.db")
    store.setup()
    key = MemberKey("login_day", "dl", "a1", "2001", 100)
    for users in ({"u1", "u2"}, {"u2", "u3"}):
        b = Batch()
        b.add_members(key, users, count_into=("login_day", K, "count"))
        b.upsert("login_day", K, set={"type": "login"})
        store.apply(b)
    assert store.members(key) == {"u1", "u2", "u3"} and store.count_members(key) == 3
    assert doc(store)["count"] == 3 and doc(store)["type"] == "login"
    b = Batch()
    b.mark_seen("coinhour", ["r1", "r2"])
    store.apply(b)
    assert store.unseen("coinhour", ["r1", "r3"]) == {"r3"}
    store.close()


def test_sqlite_file_from_before_member_counts_gets_them(tmp_path) -> None:
    """A file whose member_sets has no `n` column (written by an older version) is counted once on open."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE member_sets (id INTEGER PRIMARY KEY, "set" TEXT NOT NULL, game TEXT NOT NULL,
            area TEXT NOT NULL, plat TEXT NOT NULL, ts INTEGER NOT NULL, sub TEXT NOT NULL,
            UNIQUE ("set", game, area, plat, ts, sub));
        CREATE TABLE members (set_id INTEGER NOT NULL REFERENCES member_sets (id), member TEXT NOT NULL,
            PRIMARY KEY (set_id, member)) WITHOUT ROWID;
        INSERT INTO member_sets VALUES (1, 'login_day', 'dl', 'a1', '2001', 100, '');
        INSERT INTO members VALUES (1, 'u1'), (1, 'u2');
    """)
    db.commit()
    db.close()
    store = SQLiteStore(path)
    store.setup()
    key = MemberKey("login_day", "dl", "a1", "2001", 100)
    assert store.count_members(key) == 2
    b = Batch()
    b.add_members(key, {"u2", "u3"})
    store.apply(b)
    assert store.count_members(key) == 3 and store.members(key) == {"u1", "u2", "u3"}
    store.close()


def test_open_store_urls(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///rel/dir/a.db") as s:
        assert isinstance(s, SQLiteStore) and s.find("login_day") == []
    assert (tmp_path / "rel" / "dir" / "a.db").exists()
    with open_store(f"sqlite:///{tmp_path}/abs/b.db?busy_timeout_ms=50") as s:
        assert s.busy_timeout_ms == 50
    assert (tmp_path / "abs" / "b.db").exists()
    with pytest.raises(StoreError, match="known schemes are sqlite://, mongodb://"):
        open_store("redis://localhost/0")
    with pytest.raises(StoreError, match="sqlite:////abs/path.db"):
        open_store("sqlite://host/x.db")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mongo_unreachable_is_unavailable() -> None:
    """No server needed: a client pointed at a closed port with a 200 ms server selection timeout."""
    port = _closed_port()
    store = MongoStore.from_url(f"mongodb://127.0.0.1:{port}/x?serverSelectionTimeoutMS=200")
    b = Batch()
    b.upsert("login_day", K, inc={"count": 1})
    b.mark_seen("login", ["r1"])
    try:
        t = time.monotonic()
        with pytest.raises(StoreUnavailable, match="mongodb"):
            store.apply(b)
        with pytest.raises(StoreUnavailable):
            store.unseen("login", ["r1"])
        with pytest.raises(StoreUnavailable):
            store.find("login_day", {"game": "dl"})
        with pytest.raises(StoreUnavailable):
            open_store(f"mongodb://127.0.0.1:{port}/x?serverSelectionTimeoutMS=200")
        assert time.monotonic() - t < 5
    finally:
        store.close()


@pytest.mark.integration
def test_open_store_mongo_urls() -> None:
    url = mongo_url().rstrip("/")
    name = f"analytics_test_{uuid.uuid4().hex[:12]}"
    with open_store(f"{url}/{name}") as s:
        assert isinstance(s, MongoStore) and s.db.name == name
        b = Batch()
        b.upsert("login_day", K, inc={"count": 2})
        s.apply(b)
        assert doc(s)["count"] == 2
        s.client.drop_database(name)
    s = MongoStore.from_url("mongodb://127.0.0.1:1/stats")      # lazy: no connection attempted yet
    try:
        assert s.db.name == "stats"
        assert s.client.options.server_selection_timeout == 5
    finally:
        s.close()


@pytest.mark.integration
def test_mongo_duplicate_key_race_is_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers upserting the same new document: the loser gets E11000. The race is made
    simulated (a real one needs two writers within microseconds): "the other writer" lands the
    first operation, and ours reports E11000 for it.
    A stat upsert is retried once and lands as an update. (Seen marks are inserted and race
    differently: test_mongo_seen_mark_written_meanwhile_by_another_writer; membership sets
    use a version compare-and-swap: test_two_writers_with_stale_caches_lose_no_member.)"""
    import pymongo
    from pymongo.collection import Collection
    from pymongo.errors import BulkWriteError
    name = f"analytics_test_{uuid.uuid4().hex[:12]}"
    client = pymongo.MongoClient(mongo_url(), serverSelectionTimeoutMS=3000)
    store = MongoStore(client, name, owns_client=False)
    store.setup()
    store._replica_set = False          # the race outside a transaction: one bulk write per collection
    real = Collection.bulk_write
    raced: list[str] = []

    def racing(self, ops, *a, **kw):
        if self.name == "login_day" and self.name not in raced:
            raced.append(self.name)
            real(self, ops[:1], *a, **kw)           # "the other writer" gets there first ...
            if ops[1:]:
                real(self, ops[1:], *a, **kw)
            raise BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}],
                                  "writeConcernErrors": [], "nInserted": 0, "nUpserted": len(ops) - 1,
                                  "nMatched": 0, "nModified": 0, "nRemoved": 0, "upserted": []})
        return real(self, ops, *a, **kw)
    monkeypatch.setattr(Collection, "bulk_write", racing)
    try:
        mk = MemberKey("login_day", "dl", "1", "7", K["ts"])
        b = Batch()
        b.add_members(mk, ["u1", "u2"])
        b.upsert("login_day", K, inc={"count": 1})
        b.mark_seen("login", ["r1", "r2"])
        store.apply(b)
        assert raced == ["login_day"]
        assert store.members(mk) == {"u1", "u2"}
        assert store.unseen("login", ["r1", "r2", "r3"]) == {"r3"}
        # The simulated winner applied the same op: ours lands on top of it (1 + 1).
        assert doc(store)["count"] == 2
    finally:
        monkeypatch.undo()
        client.drop_database(name)
        client.close()


@pytest.mark.integration
@pytest.mark.parametrize("replica_set", [True, False])
def test_mongo_seen_mark_written_meanwhile_by_another_writer(replica_set: bool) -> None:
    """Seen marks are inserted (`unseen` said they are new). When another writer marked one
    meanwhile, the insert meets E11000: in a transaction that aborts it, and the batch goes
    again with upserts; without one the other marks still land. Either way: counted once."""
    import pymongo
    name = f"analytics_test_{uuid.uuid4().hex[:12]}"
    client = pymongo.MongoClient(mongo_url(), serverSelectionTimeoutMS=3000)
    store = MongoStore(client, name, owns_client=False)
    try:
        store.setup()
        if not store.atomic and replica_set:
            pytest.skip("the server at ANALYTICS_TEST_MONGO_URL is not a replica set: no transactions")
        store._replica_set = replica_set
        fresh = store.unseen("login", ["r1", "r2", "r3"])
        assert fresh == {"r1", "r2", "r3"}
        other = Batch()                     # the other writer, between our unseen() and our apply()
        other.mark_seen("login", ["r2"])
        store.apply(other)
        b = Batch()
        b.upsert("login_day", K, inc={"count": len(fresh)})
        b.mark_seen("login", sorted(fresh))
        store.apply(b)
        assert doc(store)["count"] == 3     # the batch itself is applied once, whole
        assert store.unseen("login", ["r1", "r2", "r3", "r4"]) == {"r4"}
        assert client[name].seen.count_documents({"scope": "login"}) == 3
    finally:
        client.drop_database(name)
        client.close()


@pytest.mark.integration
def test_mongo_indexes_one_key_index_serves_the_queries_and_old_ones_are_dropped() -> None:
    """A stat collection keyed (game, area, plat, ts[, ...]) gets one unique key index in that
    order (it serves the (game, area, plat, ts) queries) and the ts, (game, ts), (game, area, ts) query
    indexes (a range right after the equalities: SecantusDB uses nothing else); the sorted-key and
    separate (game, area, plat, ts) indexes older versions created are dropped (each index
    costs every write). A key without ts keeps the separate (game, area, plat, ts) index."""
    import pymongo
    name = f"analytics_test_{uuid.uuid4().hex[:12]}"
    client = pymongo.MongoClient(mongo_url(), serverSelectionTimeoutMS=3000)
    try:
        old = client[name].shop                              # what the previous version left
        old.create_index([(f, 1) for f in ("area", "game", "item", "plat", "ts")], unique=True,
                         name="key_area_game_item_plat_ts")
        old.create_index([(f, 1) for f in ("game", "area", "plat", "ts")], name="game_area_plat_ts")
        old.create_index([("ts", 1)], name="ts")
        store = MongoStore(client, name, owns_client=False)
        store.setup()
        b = Batch()
        b.upsert("shop", {**K, "item": "i1"}, inc={"count": 1})
        b.upsert("usercenter", {"game": "dl", "area": "1", "plat": "7", "uid": "u1"}, set={"grade": 3})
        store.apply(b)
        keys = {n: list(i["key"]) for n, i in client[name].shop.index_information().items()}
        query_ixs = {"ts": [("ts", 1)], "game_ts": [("game", 1), ("ts", 1)],
                     "game_area_ts": [("game", 1), ("area", 1), ("ts", 1)]}
        assert keys == {"_id_": [("_id", 1)], **query_ixs,
                        "key_game_area_plat_ts_item": [(f, 1) for f in ("game", "area", "plat", "ts", "item")]}
        assert client[name].shop.index_information()["key_game_area_plat_ts_item"]["unique"]
        keys = {n: list(i["key"]) for n, i in client[name].usercenter.index_information().items()}
        assert keys == {"_id_": [("_id", 1)], **query_ixs,
                        "key_game_area_plat_uid": [(f, 1) for f in ("game", "area", "plat", "uid")],
                        "game_area_plat_ts": [(f, 1) for f in ("game", "area", "plat", "ts")]}
        b = Batch()
        b.upsert("shop", {**K, "item": "i1"}, inc={"count": 1})
        MongoStore(client, name, owns_client=False).apply(b)    # another process: same indexes, no error
        assert doc(store, "shop", {**K, "item": "i1"}) == {**K, "item": "i1", "count": 2}
    finally:
        client.drop_database(name)
        client.close()
