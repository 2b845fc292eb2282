"""HTTP intake + stats API on a real gevent server on 127.0.0.1, feeding a real in-process topology."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from gevent.threadpool import ThreadPool

from analytics.config import load_settings
from analytics.store import open_store
from analytics.runners import LocalRunner
from analytics.topology import ComponentSpec, Topology
from analytics.web.app import create_app
from analytics.web.intake import Intake, IntakeSettings, intake_routes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]

NOW = int(time.time())
TS = NOW - 3600
EV = {"game": "dl", "area": "a1", "plat": "1", "uid": "u1", "ts": TS, "code": "login_logcount"}
COIN = {"game": "dl", "area": "a1", "plat": "1", "uid": "u1", "ts": TS, "code": "coin_logchange",
        "data": {"coin_type": "yuanbao", "change": -30, "reason": "shop"}}
SAVE = {"user_id": "u9", "session_id": "s1", "app_id": "dl", "type": "1", "event_name": "login_logcount",
        "event_time": TS * 1000, "page": "home", "country": "TR", "region": "a1", "city": "Izmir"}
DAY = datetime.fromtimestamp(TS, timezone(timedelta(hours=8))).date().isoformat()  # dl: Asia/Shanghai


@pytest.fixture
def pool():
    p = ThreadPool(4)  # requests run in threads so the server's greenlets keep running
    yield p
    p.kill()


def call(pool, method, url, **kw):
    return pool.spawn(getattr(requests, method), url, timeout=10, **kw).get()


@pytest.fixture
def running(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.extra["http"] = {"port": 0, "api_keys": {"k-shop": "shop", "k-web": "web"}, "max_batch": 5,
                              "max_body_bytes": 4096}
    settings.broker.linger_ms = 5
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.setup()
    topo = Topology([ComponentSpec("http", "spouts.http_intake:HttpIntakeSpout"),
                     ComponentSpec("loginhour", "bolts.login:LoginHourBolt"),
                     ComponentSpec("loginday", "bolts.login:LoginDayBolt"),
                     ComponentSpec("coinday", "bolts.coin:CoinDayBolt", {"flush_seconds": 0.1})])
    runner = LocalRunner(topo, settings, store=store).start()
    spout = runner.components["http"]
    assert spout.ready.wait(10), "the intake server did not start"
    yield spout, store, tmp_path
    runner.stop(timeout=10)
    store.close()


def wait_for(predicate, timeout=10.0):
    import gevent
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(0.05)
    return False


def test_intake_to_store_and_back_through_the_api(running, pool):
    spout, store, tmp_path = running
    url, key = spout.url, {"X-API-Key": "k-shop"}
    r = call(pool, "post", f"{url}/api/v1/event/save", json=EV, headers=key)
    assert r.status_code == 200, r.text
    first_id = r.json()["message_id"]
    # The same event again (a client retry) has the same id; the coin sum counts it once.
    for _ in range(2):
        r = call(pool, "post", f"{url}/api/v1/event/save", json=COIN, headers=key)
        assert r.status_code == 200
    r = call(pool, "post", f"{url}/api/v1/event/save", headers=key, json=[EV, {"game": "dl"}, dict(EV, uid="u2")])
    body = r.json()
    assert r.status_code == 200 and body["accepted"] == 2 and body["message_ids"][0] == first_id
    assert body["rejected"] == [{"index": 1, "error": "missing: area"}]
    nd = "\n".join(__import__("json").dumps(e) for e in (dict(EV, uid="u3"), SAVE)) + "\nnot json\n"
    r = call(pool, "post", f"{url}/api/v1/event/save", data=nd,
             headers={**key, "Content-Type": "application/x-ndjson"})
    assert r.json()["accepted"] == 2 and r.json()["rejected"][0]["index"] == 2
    r = call(pool, "get", f"{url}/pixel.gif", params={**EV, "uid": "u4", "api_key": "k-web"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/gif" and r.content.startswith(b"GIF89a")
    assert r.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"

    def stored():
        docs = store.find("loginday", {"game": "dl"})
        coin = store.find("coinday", {"game": "dl"})
        return docs and docs[0]["count"] == 5 and coin and coin[0]["consumed"] == 30
    assert wait_for(stored), (store.find("loginday"), store.find("coinday"))
    assert spout.intake.accepted == {"shop": 7, "web": 1}
    logs = list((tmp_path / "data").glob("http_*.txt"))
    assert logs and sum(1 for _ in logs[0].open()) == 8  # every accepted event, the retries included

    # The read API over the same store.
    r = call(pool, "get", f"{url}/api/v1/stats/loginday", params={"game": "dl", "area": "a1"})
    assert r.status_code == 200 and r.json()["count"] == 1 and r.json()["docs"][0]["count"] == 5
    r = call(pool, "get", f"{url}/api/v1/stats/loginday", params={"game": "dl", "userlist": "1"})
    assert r.json()["docs"][0]["userlist"] == ["u1", "u2", "u3", "u4", "u9"]
    r = call(pool, "get", f"{url}/api/v1/crm/user-stat/total-user", params={"game": "dl"})
    assert r.json() == {"total_user": 5}
    r = call(pool, "get", f"{url}/api/v1/crm/daily-stat/active-user", params={"date": DAY})
    assert r.json()["distinct_user"] == 5
    r = call(pool, "post", f"{url}/api/v1/crm/daily-stat/active-user", json={"date": DAY, "game": "dl"})
    assert r.json()["distinct_user"] == 5
    r = call(pool, "post", f"{url}/api/v1/crm/daily-stat/active-user", json={"date": "2001-01-01"})
    assert r.json()["distinct_user"] == 0
    r = call(pool, "get", f"{url}/api/v1/collections")
    assert "loginday" in r.json()["collections"]


def test_intake_errors_are_json_with_a_reason(running, pool):
    spout, store, tmp_path = running
    url, key = spout.url, {"X-API-Key": "k-shop"}
    save = f"{url}/api/v1/event/save"
    r = call(pool, "post", save, json=EV)
    assert r.status_code == 401 and "API key" in r.json()["error"]
    r = call(pool, "post", save, json=EV, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    r = call(pool, "post", save, json=dict(EV, ts="x"), headers=key)
    assert r.status_code == 400 and "ts must be an integer epoch" in r.json()["error"]
    r = call(pool, "post", save, data=b"{oops", headers={**key, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"].startswith("json:")
    r = call(pool, "post", save, json=[EV] * 6, headers=key)
    assert r.status_code == 413 and "max_batch" in r.json()["error"]
    r = call(pool, "post", save, json=dict(EV, data={"x": "y" * 5000}), headers=key)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]
    before = spout.counters.rejected
    r = call(pool, "get", f"{url}/pixel.gif", params={**EV, "ts": "soon", "api_key": "k-web"})
    assert r.status_code == 200 and r.content.startswith(b"GIF")
    r = call(pool, "get", f"{url}/pixel.gif", params=EV)  # no key: still a GIF, counted
    assert r.status_code == 200 and r.headers["Pragma"] == "no-cache"
    assert spout.counters.rejected == before + 2
    for params, message in (({"game[$ne]": "x"}, "unknown parameter"), ({"game": "$gt"}, "may not start with '$'"),
                            ({"limit": "-1"}, "limit"), ({"from": "tomorrow"}, "not a time")):
        r = call(pool, "get", f"{url}/api/v1/stats/loginday", params=params)
        assert r.status_code == 400 and message in r.json()["error"], (params, r.text)
    r = call(pool, "get", f"{url}/api/v1/stats/nosuch")
    assert r.status_code == 400 and "unknown collection" in r.json()["error"]
    r = call(pool, "get", f"{url}/api/v1/crm/daily-stat/active-user", params={"date": "08/01/2015"})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.json()["error"]
    spout.dead_letters.close()
    letters = "".join(p.read_text() for p in (tmp_path / "data" / "deadletter").rglob("*") if p.is_file())
    assert "ts must be an integer epoch" in letters and "API key" in letters


def test_a_full_queue_answers_503_with_retry_after(tmp_path):
    """Nobody drains this intake: the third event finds the queue full (falcon's test client, no socket)."""
    from falcon import testing
    rejected = []
    intake = Intake(IntakeSettings(queue_size=2, retry_after=3), reject=lambda raw, why: rejected.append(why))
    settings = load_settings(env={})
    client = testing.TestClient(create_app(settings, None, routes=intake_routes(intake, settings)))
    for uid in ("a", "b"):
        assert client.simulate_post("/api/v1/event/save", json=dict(EV, uid=uid)).status_code == 200
    r = client.simulate_post("/api/v1/event/save", json=dict(EV, uid="c"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "3" and "queue is full" in r.json["error"]
    r = client.simulate_post("/api/v1/event/save", json=[dict(EV, uid="d")])
    assert r.status_code == 503  # a batch is taken whole or not at all
    r = client.simulate_get("/pixel.gif", params=dict(EV, uid="e"))
    assert r.status_code == 200 and r.headers["Cache-Control"].startswith("no-cache")
    assert rejected and rejected[-1].startswith("busy:")  # the beacon event waits in the dead letters
    assert intake.backlog == 2 and intake.busy == 3
