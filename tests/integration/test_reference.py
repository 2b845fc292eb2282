"""Issue 5's acceptance test: every collection of a generated data set, exact.

Data (analytics.sample.generate, into tmp_path): three games in two zones ('dl' and
'sg' in Asia/Shanghai, 'wsdx' in America/New_York), three areas per game, two
platforms each (18 servers), 10,002 users (3,334 per game), 40 days from
2015-02-20 (so a month boundary and New York's DST change of 2015-03-08 fall in the
range); each user plays on a given day with probability 0.05 (about 20k user-days,
~165k lines), with exact duplicate lines, neighbours swapped out of order, the
generator's malformed lines, and a hand-written file of edge cases per source
(_edge_lines below: integer ids, integral-float ts, unknown op codes, records a spout
or a bolt rejects, float money, a user-record tie on ts).

Expected figures: tests/support/reference.py, a brute-force model over the raw lines
(stdlib json, zoneinfo; nothing from bolts/ or analytics.periods).

Runs: the whole default topology in one process (analytics.app.replay) into a fresh
SQLite store; the same files again into the same store; a subprocess replay killed
with SIGKILL mid-stream, then a full replay into its store; and a smaller set of the same
shape through a MongoStore over SecantusDB (MongoDB wire protocol).
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics.sample import generate
from analytics.schema import all_collections
from analytics.store import open_store
from tests.mongo_server import SecantusServer, drop_database, mongo_database_url
from tests.support import reference
from tests.support.replay_all import replay_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ZONES = {"dl": "Asia/Shanghai", "wsdx": "America/New_York", "sg": "Asia/Shanghai"}
GEN = {"seed": 5, "games": ZONES, "days": 40, "users": 3700, "areas": 3, "activity": 0.055,
       "start": 1424390400, "tag": "ref"}            # 2015-02-20 00:00 UTC
DL_AREA = "549140c8dbdb67794fc0fa3b"
#: Edge records each bolt refuses: no coin reason (x3), shop count 0, dungeon action 'leave', level without grade.
REFUSED = {"coinhour": 1, "coinday": 1, "cointype": 1, "shop": 1, "gamecopy": 1, "usercenter": 1}
DAY = 1424880000                                      # 2015-02-26 00:00 +08:00, inside the range


def _gl(code: str, uid, ts, area=DL_AREA, corpid=2001, **data) -> str:
    rec = {"op": {"code": code, "id": 1}, "area": area, "ts": ts,
           "data": {"corpid": corpid, "type": "edge", "server_name": "edge", "opno": 1, "opname": code, "acct": uid,
                    **data}}
    return json.dumps(rec, separators=(",", ":"))


def _edge_lines(now: int) -> dict[str, list[str]]:
    """Records at the edges of the validation rules and of the bolts' definitions."""
    t = DAY + 3600
    gamelog = [
        _gl("login_logcount", 424242, t),                                  # integer acct -> uid '424242'
        _gl("login_logcount", "dl-edge-1", float(t + 7), corpid="2001"),  # integral float ts, string corpid
        _gl("createrole_logcount", "dl-edge-1", t + 9),
        _gl("login_logcount", "dl-edge-2", t, area=12345),                 # integer area -> '12345'
        _gl("chat_logsay", "dl-edge-3", 1000000000),                       # unknown code: ignored, not a start time
        _gl("login_logcount", "dl-edge-3", now + 10 * 86400),              # rejected: future
        _gl("login_logcount", "dl-edge-3", 946684799),                     # rejected: before 2000
        _gl("login_logcount", "dl-edge-3", t, area=" "),                   # rejected: empty area
        _gl("login_logcount", "dl-edge-3", t, area=True),                  # rejected: bool area
        _gl("login_logcount", None, t),                                    # rejected: missing acct
        _gl("coin_logchange", "dl-edge-1", t + 60, coin_type="yuanbao", change=0, reason="noop", rest=5),
        _gl("coin_logchange", "dl-edge-1", t + 61, coin_type="yuanbao", change=-7.0, reason="gift", rest=5),
        _gl("coin_logchange", "dl-edge-1", t + 62, coin_type="yuanbao", change=12, reason="gift", rest=5),
        _gl("coin_logchange", "dl-edge-1", t + 63, coin_type="yuanbao", change=-3, rest=5),  # bolt: no reason
        # a server seen only through a record its bolt refuses: serverstarttime still has it
        _gl("shop_logbuy", "dl-edge-1", t - 86400 * 3, area="edge-area", item_id="i9", item_name="x", count=0,
            cost=1),
        _gl("shop_logbuy", "dl-edge-1", t + 70, item_id="i9", count=2, cost=2.5),   # no item_name field
        _gl("shop_logbuy", "dl-edge-1", t + 71, item_id="i9", count=1, cost=0.25),
        _gl("fuben_logchange", "dl-edge-1", t + 80, fuben_id="f9", action="leave"),  # bolt: bad action
        _gl("fuben_logchange", "dl-edge-1", t + 81, fuben_id=9, action="finish"),   # int id -> '9'
        _gl("trunk_task_finish", "dl-edge-1", t + 90, task_id="t9"),                 # finished, never accepted
        _gl("level_logchange", "dl-edge-1", t + 95, grade=7, old_grade=1),
        _gl("level_logchange", "dl-edge-2", t + 95, old_grade=1),                   # bolt: no grade
        "[1, 2, 3]", "null", '{"op": "login_logcount"}', "x" * 70000,
    ]
    gamelog.append(gamelog[0])                                              # an exact duplicate
    payment = [
        json.dumps({"game": "dl", "area": DL_AREA, "plat": 2001, "ts": DAY,
                    "users": {"dl-edge-1": {"times": 1, "amount": 0.1}, "dl-edge-2": {"times": 2.0, "amount": 0.2}}}),
        json.dumps({"game": "dl", "area": DL_AREA, "plat": "2001", "ts": DAY + 5,
                    "users": {"dl-edge-1": {"times": 2, "amount": 0.1}}}),         # times grows, amount does not
        json.dumps({"game": "dl", "area": DL_AREA, "plat": "2001", "ts": DAY + 86400 * 2, "users": {}}),
        json.dumps({"game": 5, "area": DL_AREA, "plat": "2001", "ts": DAY, "users": {}}),     # rejected
        json.dumps({"game": "dl", "area": DL_AREA, "plat": "2001", "ts": DAY,
                    "users": {"dl-edge-1": {"times": -1, "amount": 1}}}),                  # rejected
    ]
    base = {"game": "dl", "area": DL_AREA, "plat": "2001", "uid": "dl-edge-1", "name": "edge", "grade": 3,
            "rest_yuanbao": 40, "birthday": DAY, "acctid": 99, "score": 1.5, "login_time": DAY}
    syncuser = [
        json.dumps({**base, "ts": t + 95}),
        json.dumps({**base, "ts": t + 95, "name": "edgy", "grade": 2}),   # same ts: content decides, grade 7 stays
        json.dumps({**base, "ts": t + 50, "name": "older"}),
        json.dumps({**base, "ts": t + 99, "uid": "dl-edge-9", "grade": -1}),             # rejected
        json.dumps({k: v for k, v in {**base, "ts": t}.items() if k != "score"}),       # rejected: no score
    ]
    return {"gamelog_dl_edge.txt": gamelog, "payment_edge.txt": payment, "syncuser_edge.txt": syncuser}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    t0 = time.monotonic()
    s = generate(tmp / "logs", **GEN)
    now = int(time.time())
    for name, lines in _edge_lines(now).items():
        (tmp / "logs" / name).write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    logs = tmp / "logs"
    gamelogs = {g: [str(logs / f"gamelog_{g}_ref.txt")] for g in ZONES}
    gamelogs["dl"].append(str(logs / "gamelog_dl_edge.txt"))
    plan = {"zones": ZONES, "gamelogs": gamelogs, "timeout": 400,
            "payments": [str(logs / "payment_ref.txt"), str(logs / "payment_edge.txt")],
            "syncusers": [str(logs / "syncuser_ref.txt"), str(logs / "syncuser_edge.txt")]}
    expected = reference.expected(gamelogs={g: [Path(p) for p in ps] for g, ps in gamelogs.items()},
                                  payments=[Path(p) for p in plan["payments"]],
                                  syncusers=[Path(p) for p in plan["syncusers"]], zones=ZONES, now=now)
    lines = sum(s.lines.values()) + sum(len(v) for v in _edge_lines(now).values())
    print(f"\nreference data: {lines} lines, model in {time.monotonic() - t0:.1f}s")
    return tmp, plan, expected, lines


def _plan(dataset, name: str, **more):
    tmp, plan, _, _ = dataset
    return {**plan, "store": f"sqlite:///{tmp / name}.db", "data_dir": str(tmp / f"data-{name}"), **more}


def _stored(store) -> dict[str, dict]:
    out = {}
    for name, coll in all_collections().items():
        docs = reference.normalize(store.find(name), coll.key)
        if name == "userlevel":
            # a grade nobody holds any more keeps a count-0 document (bolts/users.py); which grades were
            # ever held at a flush depends on flush timing, so a 0 counts as no document
            docs = {k: v for k, v in docs.items() if v.get("count") != 0}
        out[name] = docs
    return out


def _compare(stored: dict[str, dict], expected: dict[str, dict]) -> None:
    problems = []
    for name in all_collections():
        problems += reference.diff(name, stored[name], expected.get(name, {}))
    assert not problems, "stored figures differ from the reference model:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def first_run(dataset):
    plan = _plan(dataset, "first")
    t0 = time.monotonic()
    report = replay_all(plan)
    seconds = time.monotonic() - t0
    print(f"first replay: {dataset[3]} lines in {seconds:.1f}s ({dataset[3] / seconds:,.0f} lines/s)")
    with open_store(plan["store"]) as store:
        stored = _stored(store)
    return plan, report, stored


@pytest.mark.timeout(240)
def test_every_collection_matches_the_brute_force_model(dataset, first_run):
    _, _, expected, _ = dataset
    _, report, stored = first_run
    t = report.totals()
    # the spouts reject the generator's 11 malformed lines and 13 edge lines
    assert t["rejected"] == 11 + 13
    # the bolts refuse (ValueError, dead-lettered, counted as errors) the edge records that lack what they need
    assert {n: r["errors"] for n, r in report.bolts.items() if r.get("errors")} == REFUSED
    assert t["errors"] == sum(REFUSED.values())
    assert t["ignored"] == 1                                  # the unknown op code (spouts only)
    assert t["deduplicated"] > 0
    # the data set is what the docstring says, and every collection has something to compare
    assert len({k[:3] for k in expected["loginday"]}) == 18 + 1   # 18 servers + the integer-area edge server
    assert len({k[3] for k in expected["usercenter"]}) > 9800             # users who played at least once
    assert len({k[3] for k in expected["loginday"]}) >= 40
    for name in all_collections():
        assert expected.get(name), f"the reference has no {name} documents: the data set does not exercise it"
    # hand-picked figures of the edge records, independent of both implementations
    dl = ("dl", DL_AREA, "2001")
    assert expected["serverstarttime"][("dl", "edge-area")] == {"ts": DAY + 3600 - 3 * 86400,
                                                               "server_name_at": f"{DAY + 3600 - 3 * 86400:012d}\tedge"}
    assert expected["cointype"][(*dl, DAY, "gift")] == {"consumed": 7, "gained": 12, "times": 2}
    assert expected["shop"][(*dl, DAY, "i9")] == {"count": 3, "buy_times": 2, "cost": 2.75, "users": 1}
    assert expected["payorderdetail"][(*dl, DAY, "dl-edge-1")] == {"times": 2, "amount": 0.1}
    assert expected["usercenter"][(*dl, "dl-edge-1")]["grade"] == 7
    assert expected["usercenter"][(*dl, "dl-edge-1")]["name"] == "edgy"
    assert ("dl", "12345", "2001", DAY) in expected["loginday"]
    _compare(stored, expected)


@pytest.mark.timeout(240)
def test_replaying_the_same_files_again_changes_nothing(dataset, first_run):
    _, _, expected, _ = dataset
    plan, _, first = first_run
    report = replay_all(plan)
    # the dedupe bolts drop the refused records as already seen (their ids were marked with the batch);
    # usercenter (no dedupe: newest wins) refuses its record again
    assert {n: r["errors"] for n, r in report.bolts.items() if r.get("errors")} == {"usercenter": 1}
    assert report.totals()["deduplicated"] > dataset[3] // 2
    with open_store(plan["store"]) as store:
        again = _stored(store)
    for name in all_collections():
        assert reference.diff(name, again[name], first[name]) == [], name
    _compare(again, expected)


@pytest.mark.timeout(300)
def test_kill_9_mid_stream_then_replay_gives_the_exact_figures(dataset, tmp_path):
    _, _, expected, _ = dataset
    plan = _plan(dataset, "killed")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    db = plan["store"][len("sqlite:///"):]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests/support/replay_all.py"), str(plan_file)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, rows = time.monotonic() + 120, 0
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if os.path.exists(db):
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                        rows = con.execute("SELECT coalesce(sum(n), 0) FROM bitmaps").fetchone()[0]  # members stored
                except sqlite3.Error:
                    continue
                if rows >= 20000:                         # a part is stored (the whole run stores ~10x that)
                    break
        assert proc.poll() is None, f"the replay ended before it could be killed: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert rows >= 20000
    with open_store(plan["store"]) as store:
        partial = _stored(store)
    assert any(reference.diff(n, partial[n], expected.get(n, {})) for n in all_collections()), \
        "the killed run had already stored everything: not a mid-stream kill"
    report = replay_all(plan)
    refused = {n: r["errors"] for n, r in report.bolts.items() if r.get("errors")}
    assert refused.get("usercenter") == 1 and all(REFUSED.get(n) == e for n, e in refused.items()), refused
    with open_store(plan["store"]) as store:
        _compare(_stored(store), expected)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """A smaller set of the same shape (100 users a game, activity 0.1) plus the edge records, for the
    runs over SecantusDB: (plan without store and data_dir, expected figures)."""
    logs = tmp_path_factory.mktemp("small") / "logs"
    generate(logs, **{**GEN, "users": 100, "activity": 0.1})
    now = int(time.time())
    for name, lines in _edge_lines(now).items():
        (logs / name).write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    gamelogs = {g: [str(logs / f"gamelog_{g}_ref.txt")] for g in ZONES}
    gamelogs["dl"].append(str(logs / "gamelog_dl_edge.txt"))
    plan = {"zones": ZONES, "gamelogs": gamelogs, "timeout": 100,
            "payments": [str(logs / "payment_ref.txt"), str(logs / "payment_edge.txt")],
            "syncusers": [str(logs / "syncuser_ref.txt"), str(logs / "syncuser_edge.txt")]}
    expected = reference.expected(gamelogs={g: [Path(p) for p in ps] for g, ps in gamelogs.items()},
                                  payments=[Path(p) for p in plan["payments"]],
                                  syncusers=[Path(p) for p in plan["syncusers"]], zones=ZONES, now=now)
    assert len(expected["usercenter"]) > 250
    return plan, expected


@pytest.mark.timeout(120)
def test_the_same_figures_with_secantusdb_as_the_store(small_set, tmp_path):
    """The same comparison with a MongoStore over SecantusDB (MongoDB wire protocol; or the server of
    $ANALYTICS_TEST_MONGO_URL) in a database of its own: every figure of every collection equals the model's."""
    plan, expected = small_set
    plan = {**plan, "store": mongo_database_url(), "data_dir": str(tmp_path / "data")}
    try:
        t0 = time.monotonic()
        report = replay_all(plan)
        print(f"replay over SecantusDB (MongoDB wire protocol): {time.monotonic() - t0:.1f}s")
        assert report.totals()["rejected"] == 11 + 13
        assert {n: r["errors"] for n, r in report.bolts.items() if r.get("errors")} == REFUSED
        with open_store(plan["store"]) as store:
            assert store.atomic, "SecantusDB advertises a replica set: batches run in transactions"
            stored = _stored(store)
        _compare(stored, expected)
    finally:
        drop_database(plan["store"])


def _stat_documents(url: str) -> int:
    """Stat documents stored so far (0 while the server is down)."""
    import pymongo
    try:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=500) as c:
            db = c.get_default_database()
            return sum(db[name].estimated_document_count() for name in all_collections())
    except pymongo.errors.PyMongoError:
        return 0


@pytest.mark.timeout(240)
def test_kill_9_of_the_database_mid_replay_then_replay_gives_the_exact_figures(small_set, tmp_path):
    """A crash of SecantusDB (kill -9 of its process) while a replay writes: restarted on the same data,
    the running replay goes on; a second replay then leaves every figure exact (0 lost, 0 double)."""
    plan, expected = small_set
    with SecantusServer() as server:
        plan = {**plan, "store": server.url + "drill", "data_dir": str(tmp_path / "data"), "timeout": 150}
        plan_file = tmp_path / "plan.json"
        plan_file.write_text(json.dumps(plan))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests/support/replay_all.py"), str(plan_file)],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline, docs = time.monotonic() + 90, 0
            while time.monotonic() < deadline and proc.poll() is None and docs == 0:
                time.sleep(0.1)
                docs = _stat_documents(plan["store"])
            assert proc.poll() is None and docs > 0, f"no write seen before the replay ended: {proc.poll()}"
            server.kill()                                 # the database crashes mid-replay
            time.sleep(1.0)
            server.start()                                # same storage, same port
            out, err = proc.communicate(timeout=150)      # the replay retried and went on
            assert proc.returncode == 0, err[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        with open_store(plan["store"]) as store:
            after_crash = _stored(store)
        report = replay_all(plan)
        refused = {n: r["errors"] for n, r in report.bolts.items() if r.get("errors")}
        assert refused.get("usercenter") == 1 and all(REFUSED.get(n) == e for n, e in refused.items()), refused
        with open_store(plan["store"]) as store:
            _compare(_stored(store), expected)
    print(f"killed at {docs} stat documents; after the crash {sum(map(len, after_crash.values()))} stored, "
          f"{sum(len(reference.diff(n, after_crash[n], expected.get(n, {}))) for n in all_collections())} "
          f"differing from the model before the second replay")
