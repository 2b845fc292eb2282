"""Read keys: 401 without, 403 with a write-only key, 200 with a read key, on every read route and the
dashboard (whose cookie carries the key for fetch() and EventSource); /healthz stays open; a public
address needs read keys; the shipped configurations start."""
from __future__ import annotations

import ast
import time
from pathlib import Path

import falcon.testing
import pytest

from analytics.config import ConfigError, load_settings
from analytics.store import open_store
from analytics.web.access import COOKIE, ReadAccess, is_loopback
from analytics.web.app import create_app
from analytics.web.intake import Intake, IntakeSettings, intake_routes
from analytics.web.live import LiveFeed

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
WRITE, READ = "w-0123456789abcdef", "r-0123456789abcdef"
TS = int(time.time()) - 3600
EV = {"game": "dl", "area": "a1", "plat": "1", "uid": "u1", "ts": TS, "code": "login_logcount"}
#: Every read route, with parameters that make it answer 200.
READS = ["/api/v1/stats/payorderuser?game=dl", "/api/v1/stats/payorderdetail?game=dl",
         "/api/v1/stats/loginday?game=dl&userlist=1", "/api/v1/collections", "/api/v1/games",
         "/api/v1/crm/user-stat/total-user?game=dl", "/api/v1/crm/daily-stat/active-user?date=2015-01-08",
         "/api/v1/cohorts?game=dl", "/api/v1/monetization?game=dl", "/api/v1/funnel?game=dl",
         "/api/v1/today?game=dl", "/api/v1/http", "/static/js/dashboard.js"]


class _NoLive(LiveFeed):
    """/api/v1/live answers its headers and ends (the test client would read an endless stream)."""

    def stream(self, client):
        self.unsubscribe(client)
        yield b"retry: 2000\n\n"


@pytest.fixture
def web(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.extra["http"] = {"api_keys": {WRITE: "shop"}, "read_keys": {READ: "studio", "other-read-key": "ops"}}
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.setup()
    intake = Intake(IntakeSettings.from_table(settings.extra["http"]))
    app = create_app(settings, store, routes=intake_routes(intake, settings), live=_NoLive(store, settings))
    yield falcon.testing.TestClient(app), app, intake
    store.close()


def get(client, url, **kw):
    path, _, qs = url.partition("?")
    return client.simulate_get(path, query_string=qs, **kw)


@pytest.mark.parametrize("url", READS + ["/api/v1/live?game=dl"])
def test_every_read_needs_a_read_key(web, url):
    client, _, _ = web
    r = get(client, url)
    assert r.status_code == 401 and "read key" in r.json["error"] and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert get(client, url, headers={"X-API-Key": "nope"}).status_code == 401
    r = get(client, url, headers={"X-API-Key": WRITE})
    assert r.status_code == 403 and "only send events" in r.json["error"]
    assert get(client, url, headers={"Authorization": f"Bearer {WRITE}"}).status_code == 403
    assert get(client, url, headers={"X-API-Key": READ}).status_code == 200
    assert get(client, url, headers={"Authorization": f"Bearer {READ}"}).status_code == 200
    assert get(client, url, headers={"Authorization": "Bearer other-read-key"}).status_code == 200
    assert get(client, url, headers={"Cookie": f"{COOKIE}={READ}"}).status_code == 200
    assert get(client, url, headers={"Cookie": f"{COOKIE}={WRITE}"}).status_code == 403


def test_healthz_and_the_intake_need_no_read_key(web):
    client, _, intake = web
    r = client.simulate_get("/healthz")
    assert r.status_code == 200 and r.json == {"status": "ok"}
    assert client.simulate_post("/api/v1/event/save", json=EV, headers={"X-API-Key": WRITE}).status_code == 200
    assert client.simulate_get("/pixel.gif", params={**EV, "uid": "u2", "api_key": WRITE}).status_code == 200
    assert client.simulate_post("/api/v1/event/save", json=EV, headers={"X-API-Key": READ}).status_code == 401
    assert intake.accepted == {"shop": 2}


def test_the_dashboard_asks_for_the_key_once_and_keeps_it_in_a_strict_httponly_cookie(web):
    client, _, _ = web
    r = client.simulate_get("/", query_string="game=dl&view=funnel")
    assert r.status_code == 401 and b'action="/login"' in r.content and b'name="key"' in r.content
    assert b"/?game=dl&amp;view=funnel" in r.content          # back to the same view afterwards
    r = client.simulate_post("/login", body=f"key={WRITE}&next=/", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401 and "Set-Cookie" not in r.headers and b"not a read key" in r.content
    r = client.simulate_post("/login", body=f"key={READ}&next=/%3Fgame%3Ddl", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["Location"] == "/?game=dl"
    cookie = r.cookies[COOKIE]
    assert cookie.value == READ and cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/"
    assert not cookie.secure   # plain http here; behind https (X-Forwarded-Proto) it is Secure
    r = client.simulate_post("/login", body=f"key={READ}&next=//evil.example/", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https"})
    assert r.headers["Location"] == "/" and r.cookies[COOKIE].secure
    r = client.simulate_get("/", headers={"Cookie": f"{COOKIE}={READ}"})
    assert r.status_code == 200 and b"<title>Game analytics</title>" in r.content
    r = get(client, "/api/v1/live?game=dl", headers={"Cookie": f"{COOKIE}={READ}"})   # what EventSource sends
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
    r = client.simulate_post("/logout", headers={"Cookie": f"{COOKIE}={READ}"})
    assert r.status_code == 303 and r.cookies[COOKIE].value == "" and r.cookies[COOKIE].max_age in (0, -1, None)


def test_without_read_keys_reads_stay_open_on_loopback(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        client = falcon.testing.TestClient(create_app(settings, store))
        assert client.simulate_get("/api/v1/collections").status_code == 200
        assert client.simulate_get("/").status_code == 200
    finally:
        store.close()


def test_the_intake_is_served_only_where_its_routes_are_given(tmp_path):
    """`analytics serve` gives create_app no routes: the intake's paths are 404 there; the http spout gives them."""
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        client = falcon.testing.TestClient(create_app(settings, store))
        assert client.simulate_post("/api/v1/event/save", json=EV).status_code == 404
        assert client.simulate_get("/pixel.gif", params=EV).status_code == 404
        intake = Intake(IntakeSettings())
        client = falcon.testing.TestClient(create_app(settings, store, routes=intake_routes(intake, settings)))
        assert client.simulate_post("/api/v1/event/save", json=EV).status_code == 200
        assert client.simulate_get("/pixel.gif", params=EV).status_code == 200 and intake.accepted == {"": 2}
    finally:
        store.close()
    tree = ast.parse((REPO / "analytics" / "web" / "app.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "analytics.web.intake" not in imported  # the app knows no intake; its owner brings it


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                            ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("", False),
                                            ("::", False), ("10.0.0.5", False), ("stats.example", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_a_public_address_needs_read_keys_or_public_read():
    ReadAccess().check_bind("127.0.0.1")
    with pytest.raises(ConfigError, match="not loopback.*read_keys.*public_read"):
        ReadAccess().check_bind("0.0.0.0")
    with pytest.raises(ConfigError):
        ReadAccess(write_keys={WRITE: "shop"}).check_bind("10.0.0.5")   # write keys do not guard reads
    ReadAccess(read_keys={READ: "studio"}).check_bind("0.0.0.0")
    ReadAccess(public_read=True).check_bind("0.0.0.0")


@pytest.mark.parametrize("table, message", [({"read_keys": ["k"]}, "read_keys must be a table"),
                                            ({"read_keys": {"": "x"}}, "read_keys must be a table"),
                                            ({"read_keys": {"k": 1}}, "read_keys must be a table"),
                                            ({"read_keys": {"a b": "x"}}, "only letters, digits"),
                                            ({"read_keys": {"k;1": "x"}}, "only letters, digits"),
                                            ({"public_read": "yes"}, "public_read must be true or false")])
def test_bad_read_settings_are_config_errors(table, message):
    with pytest.raises(ConfigError, match=message):
        ReadAccess.from_table(table)


def test_keys_are_matched_in_constant_time_by_digest():
    access = ReadAccess(read_keys={READ: "studio", "x": "short"})
    assert access.reader(READ) == "studio" and access.reader("x") == "short"
    assert access.reader(READ[:-1]) is None and access.reader(READ + "x") is None and access.reader("") is None
    assert access.reader("é\udcff") is None   # whatever a header decodes to, never an exception


@pytest.mark.parametrize("path", sorted((REPO / "deploy" / "config").rglob("*.toml")), ids=lambda p: p.name)
def test_the_shipped_configurations_start(path):
    http = load_settings(path, env={}).extra.get("http")
    if http is not None:
        ReadAccess.from_table(http).check_bind(str(http.get("host", "127.0.0.1")))
