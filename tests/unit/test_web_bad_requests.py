"""Every bad request is a 4xx with a reason (or the beacon's GIF), counted, and dead letters hold no key.

The inputs of issue 20's list, through falcon's test client (no socket): deep
`data` (POST and beacon), a beacon `ts` of '²' or 5,000 digits, and `from`/`to`/
`limit` of '²', 20 digits or 5,000 digits on stats, cohorts and funnel.
"""
from __future__ import annotations

import time

import falcon.testing
import pytest

from analytics.config import load_settings
from analytics.store import open_store
from analytics.web.app import create_app
from analytics.web.intake import Intake, IntakeSettings, intake_routes

pytestmark = pytest.mark.timeout(30)

TS = int(time.time()) - 3600
EV = {"game": "dl", "area": "a1", "plat": "1", "uid": "u1", "ts": TS, "code": "login_logcount"}
WRITE, READ = "w-0123456789abcdef", "r-0123456789abcdef"
BAD_NUMBERS = ["²", "9" * 20, "-" + "9" * 20, "9" * 5000]


@pytest.fixture
def web(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.extra["http"] = {"api_keys": {WRITE: "shop"}, "read_keys": {READ: "studio"}}
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.setup()
    letters: list[tuple[object, str]] = []
    intake = Intake(IntakeSettings.from_table(settings.extra["http"]), reject=lambda raw, why: letters.append((raw, why)))
    app = create_app(settings, store, routes=intake_routes(intake, settings))
    yield falcon.testing.TestClient(app, headers={"X-API-Key": READ}), app, intake, letters
    store.close()


def deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [300, 1000])
def test_deep_data_is_a_400_by_post_and_a_gif_by_beacon(web, depth):
    client, app, intake, letters = web
    body = ('{"game":"dl","area":"a1","plat":"1","uid":"u1","ts":%d,"code":"login_logcount","data":%s}'
            % (TS, deep(depth))).encode()
    r = client.simulate_post("/api/v1/event/save", body=body, headers={"X-API-Key": WRITE})
    assert r.status_code == 400 and r.json["error"].startswith("depth:"), r.text
    qs = "&".join(f"{k}={v}" for k, v in EV.items()) + f"&api_key={WRITE}&data={deep(depth)}"
    r = client.simulate_get("/pixel.gif", query_string=qs)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/gif"
    assert intake.rejected == 2 and [why.split(":")[0] for _, why in letters] == ["depth", "depth"]
    assert app.counters.responses[400] == 1
    assert sum(intake.accepted.values()) == 0


@pytest.mark.parametrize("ts", ["²", "9" * 5000, "9" * 20])
def test_a_beacon_ts_that_is_no_64_bit_ascii_number_is_a_gif_and_counted(web, ts):
    client, app, intake, letters = web
    r = client.simulate_get("/pixel.gif", params={**EV, "ts": ts, "api_key": WRITE})
    assert r.status_code == 200 and r.content.startswith(b"GIF89a")
    assert intake.rejected == 1 and "ts must be an integer epoch" in letters[0][1]


@pytest.mark.parametrize("path, param", [("/api/v1/stats/loginday", "from"), ("/api/v1/stats/loginday", "to"),
                                         ("/api/v1/stats/loginday", "limit"), ("/api/v1/cohorts", "from"),
                                         ("/api/v1/cohorts", "to"), ("/api/v1/funnel", "from"), ("/api/v1/funnel", "to"),
                                         ("/api/v1/monetization", "to")])
def test_numbers_that_are_no_64_bit_ascii_integers_are_a_400_on_the_read_api(web, path, param):
    client, app, _, _ = web
    for value in BAD_NUMBERS:
        r = client.simulate_get(path, params={"game": "dl", param: value})
        assert r.status_code == 400 and r.json["error"], (path, param, value[:10], r.text)
    assert app.counters.as_dict()["4xx"] == len(BAD_NUMBERS) and app.counters.as_dict()["5xx"] == 0
    for good in (["1420646400", "-5", "2015-01-09", "2015-01-09T08:00:00"] if param != "limit" else [str(2 ** 63 - 1)]):
        r = client.simulate_get(path, params={"game": "dl", param: good})
        assert r.status_code == 200, (path, param, good, r.text)


def test_counts_every_4xx_by_status(web):
    client, app, _, _ = web
    client.simulate_get("/api/v1/stats/nosuch")
    client.simulate_get("/api/v1/stats/loginday", params={"game[$ne]": "x"})
    client.simulate_get("/api/v1/stats/loginday", headers={"X-API-Key": "nope"})
    client.simulate_post("/api/v1/event/save", json=EV)                      # no write key
    client.simulate_post("/api/v1/event/save", json=[EV] * 1001, headers={"X-API-Key": WRITE})
    counts = app.counters.as_dict()
    assert counts["responses"] == {"400": 2, "401": 2, "413": 1} and counts["4xx"] == 5
    r = client.simulate_get("/api/v1/http")
    assert r.status_code == 200 and r.json["responses"]["400"] == 2


def test_dead_letters_never_hold_a_key(web):
    client, _, intake, letters = web
    # a bad event with a good key, an unknown key, a key given twice, a key inside the event, a broken body
    client.simulate_get("/pixel.gif", params={**EV, "ts": "soon", "api_key": WRITE})
    client.simulate_get("/pixel.gif", params={**EV, "api_key": "guess-" + WRITE})
    client.simulate_get("/pixel.gif", query_string=f"game=dl&api_key={WRITE}&api_key={READ}")
    client.simulate_post("/api/v1/event/save", json=[{**EV, "ts": "x", "api_key": WRITE, "data": {"k": READ}}],
                         headers={"X-API-Key": WRITE})
    client.simulate_post("/api/v1/event/save", body=f'{{"api_key": "{WRITE}", oops'.encode(),
                         headers={"X-API-Key": WRITE})
    assert len(letters) == 5 and intake.rejected == 5
    text = repr(letters)
    assert WRITE not in text and READ not in text and "***" in text
