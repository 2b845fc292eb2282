"""/api/v1/live end to end: an event POSTed to the intake moves today's figures on an open SSE stream.

A real in-process topology (the http spout and the login/sign-up/role bolts, flushing
every 0.2 s) on a SQLite file; the stream is read by `requests` in a thread, as a
browser's EventSource would read it. No timing is asserted beyond a generous bound.
"""
from __future__ import annotations

import time

import gevent
import orjson
import pytest
import requests
from gevent.threadpool import ThreadPool

from analytics.config import load_settings
from analytics.store import open_store
from analytics.runners import LocalRunner
from analytics.topology import ComponentSpec, Topology

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]

FAST = {"flush_seconds": 0.2}


@pytest.fixture
def running(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.extra["http"] = {"port": 0}
    settings.broker.linger_ms = 5
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.setup()
    specs = [ComponentSpec("http", "spouts.http_intake:HttpIntakeSpout")]
    for kind in ("login", "signup", "createrole"):
        module = "bolts." + kind
        cls = {"login": "Login", "signup": "Signup", "createrole": "CreateRole"}[kind]
        specs += [ComponentSpec(f"{kind}hour", f"{module}:{cls}HourBolt", FAST),
                  ComponentSpec(f"{kind}day", f"{module}:{cls}DayBolt", FAST)]
    runner = LocalRunner(Topology(specs), settings, store=store).start()
    spout = runner.components["http"]
    assert spout.ready.wait(10), "the intake server did not start"
    yield spout
    runner.stop(timeout=10)
    store.close()


def _events(url: str, out: list, stop: list) -> None:
    """Read SSE `today` events into `out` (in a thread) until stop is set."""
    with requests.get(url, stream=True, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                out.append((time.monotonic(), orjson.loads(line[6:])))
            if stop:
                return


def test_a_posted_event_reaches_the_open_stream(running):
    spout = running
    pool = ThreadPool(2)
    got: list = []
    stop: list = []
    reader = pool.spawn(_events, f"{spout.url}/api/v1/live?game=dl", got, stop)
    try:
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert got and got[0][1]["active"] == 0 and got[0][1]["game"] == "dl"
        now = int(time.time())
        events = [{"game": "dl", "area": "a1", "plat": "1", "uid": "u1", "ts": now, "code": code}
                  for code in ("signup_logcount", "createrole_logcount", "login_logcount")]
        events.append({**events[-1], "uid": "u2", "area": "a2"})
        sent = time.monotonic()
        r = pool.spawn(requests.post, f"{spout.url}/api/v1/event/save", json=events, timeout=10).get()
        assert r.status_code == 200 and r.json()["accepted"] == 4, r.text
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (got[-1][1]["active"] == 2 and got[-1][1]["role"] == 1):
            gevent.sleep(0.05)
        last = got[-1][1]
        assert (last["active"], last["signup"], last["role"]) == (2, 1, 1), got
        assert last["seq"] > got[0][1]["seq"] and got[-1][0] - sent < 10
        assert spout.live.notified > 0              # pushed because of the day bolts' state tuples
    finally:
        stop.append(True)
        spout.live.close()                          # ends the stream, so the reader thread returns
        reader.wait(10)
        pool.kill()
