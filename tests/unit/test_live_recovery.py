"""The pieces of exactly-once that live outside the checkpoint protocol (issue 19):
the HTTP intake answers 200 only once an event is on disk; timer bolts checkpoint the
periods they have yet to recompute; bolts re-announce after a source rewinds; a runner
with a dead component says so."""
from __future__ import annotations

import time
from pathlib import Path

import gevent
import pytest
from falcon import testing

from analytics.config import GameSettings, load_settings
from analytics.component import Bolt, Context
from analytics.disklog import DiskLog, GroupCommitLog
from analytics.store import open_store
from analytics.store.base import Batch, MemberKey
from analytics.testing import wait_until
from analytics.runners import LocalRunner
from analytics.topology import ComponentSpec, Topology
from analytics.tuples import Tuple
from analytics.web.app import create_app
from analytics.web.intake import Intake, IntakeSettings, intake_routes
from bolts.active import ActiveDayBolt

pytestmark = pytest.mark.timeout(30)

TS = int(time.time()) - 3600
EV = {"game": "dl", "area": "a1", "plat": "1", "uid": "u1", "ts": TS, "code": "login_logcount"}


def _client(log_dir: Path) -> tuple[testing.TestClient, GroupCommitLog, Intake]:
    log = GroupCommitLog(DiskLog(log_dir, "http"), commit_ms=1)
    intake = Intake(IntakeSettings(retry_after=2), log=log.append)
    settings = load_settings(env={})
    return testing.TestClient(create_app(settings, None, routes=intake_routes(intake, settings))), log, intake


def test_an_event_is_answered_200_only_once_it_is_in_the_flushed_log(tmp_path):
    client, log, intake = _client(tmp_path / "data")
    r = client.simulate_post("/api/v1/event/save", json=[dict(EV, uid="a"), dict(EV, uid="b")])
    assert r.status_code == 200 and r.json["accepted"] == 2
    lines = log.log.path.read_bytes().splitlines()      # on disk already: no close, no flush by the test
    assert len(lines) == 2 and b'"uid":"a"' in lines[0]
    assert intake.appended == 2 and log.commits == 1
    log.close()


def test_a_log_that_cannot_be_written_answers_503_never_200(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    client, log, intake = _client(blocker / "data")
    r = client.simulate_post("/api/v1/event/save", json=EV)
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert "intake log cannot be written" in r.json["error"]
    assert intake.appended == 0 and intake.accepted == {}


def test_a_write_that_fails_mid_file_is_refused_and_the_next_event_starts_a_fresh_line(tmp_path, monkeypatch):
    client, log, intake = _client(tmp_path / "data")
    assert client.simulate_post("/api/v1/event/save", json=dict(EV, uid="a")).status_code == 200
    fh = log.log._fh
    real = fh.write
    calls = []

    def full_disk(data):
        calls.append(data)
        if len(calls) == 1:
            real(data[:7])                 # a torn line, then the error
            raise OSError(28, "No space left on device")
        return real(data)
    monkeypatch.setattr(fh, "write", full_disk)
    assert client.simulate_post("/api/v1/event/save", json=dict(EV, uid="b")).status_code == 503
    assert client.simulate_post("/api/v1/event/save", json=dict(EV, uid="c")).status_code == 200
    lines = log.log.path.read_bytes().split(b"\n")
    assert b'"uid":"a"' in lines[0] and len(lines[1]) == 7 and b'"uid":"c"' in lines[2]
    assert intake.appended == 2
    log.close()


def test_many_requests_share_one_write_and_flush(tmp_path):
    client, log, intake = _client(tmp_path / "data")
    log.commit_ms = 20
    done = [gevent.spawn(client.simulate_post, "/api/v1/event/save", json=dict(EV, uid=f"u{i}")) for i in range(50)]
    gevent.joinall(done, timeout=10)
    assert all(g.value.status_code == 200 for g in done)
    assert intake.appended == 50 and log.commits < 10
    log.close()


# -- timers ------------------------------------------------------------------------------------

JAN08 = 1420646400
SERVER = {"game": "dl", "area": "549140c8dbdb67794fc0fa3b", "plat": "2001"}


def _timer(tmp_path: Path, store) -> ActiveDayBolt:
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.games = {"dl": GameSettings("dl", "Asia/Shanghai")}
    ctx = Context(settings=settings, zmq=None, receiver="inproc://x", sender="inproc://y", store=store)
    return ActiveDayBolt(ctx, startup_days=0, refresh_seconds=None)


def test_a_timer_bolt_stores_the_periods_it_owes_and_a_restart_recomputes_them(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    b = Batch()
    b.add_members(MemberKey("login_day", *SERVER.values(), JAN08), ["u1", "u2"])
    store.apply(b)
    bolt = _timer(tmp_path, store)
    bolt.process(Tuple("login.day", "x", JAN08, {**SERVER, "ts": JAN08, "count": 2, "type": "login"}))
    batch = Batch()
    bolt.flush(batch)                      # a flush before any tick: the dirty day is state to keep
    store.apply(batch)
    assert store.find("activeday") == []
    # The process dies here (its checkpoint acknowledged); a new one owes the same period.
    again = _timer(tmp_path, store)
    again.tick(time.time())
    batch = Batch()
    again.flush(batch)
    store.apply(batch)
    (doc,) = store.find("activeday")
    assert doc["ac_user"] == 2
    assert store.find("bolt_state", {"bolt": "activeday"})[0]["dirty"] == []
    store.close()


# -- a dead component --------------------------------------------------------------------------

class _Broken(Bolt):
    name = "broken"
    topics = ["gamelog.login_logcount"]

    def run(self) -> None:
        raise RuntimeError("a bug outside every hook")


def test_a_runner_names_a_component_that_died(tmp_path):
    import tests.unit.test_live_recovery as me
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    topology = Topology([ComponentSpec("gamelog", "spouts.gamelog:GamelogSpout",
                                       {"files": [str(tmp_path / "none.log")], "game": "dl"}),
                         ComponentSpec("broken", f"{me.__name__}:_Broken")])
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    runner = LocalRunner(topology, settings, store=store).start()
    try:
        wait_until(runner.failures, 10)
        assert runner.failures() == ["broken: RuntimeError('a bug outside every hook')"]
    finally:
        runner.stop(timeout=5)
        store.close()
