"""The report endpoints (/api/v1/cohorts, /monetization, /funnel, /today, /live) over a replayed sample.

The store is filled by a replay of the committed sample logs through the whole
topology; the expected figures are summed here, independently of
analytics/web/figures.py, from the brute-force model of the same raw lines
(tests/support/reference.py): counts and amounts summed over the selected
servers, rates recomputed from the sums.
"""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import falcon.testing
import orjson
import pytest

from analytics.config import GameSettings, load_settings
from analytics.store import open_store
from analytics.web.app import create_app
from analytics.web.live import LiveFeed
from analytics.web.reports import Selection
from tests.support.sample_store import ZONES, replay_sample

pytestmark = pytest.mark.timeout(30)

DL = "549140c8dbdb67794fc0fa3b"
RET = (1, 2, 3, 4, 5, 6, 7, 14, 30)
LTV = (1, 7, 14, 30)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    url, expected = replay_sample(tmp_path_factory.mktemp("sample"))
    store = open_store(url)
    settings = load_settings(env={}, data_dir=str(tmp_path_factory.mktemp("data")))
    settings.games = {g: GameSettings(g, tz) for g, tz in ZONES.items()}
    yield store, settings, expected
    store.close()


@pytest.fixture(scope="module")
def client(sample):
    store, settings, _ = sample
    return falcon.testing.TestClient(create_app(settings, store))


def day(ts: int, game: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(ZONES[game])).strftime("%Y-%m-%d")


def pct(part, whole):
    return round(100 * part / whole, 2) if whole else 0.0


def money(x, n):
    return round(x / n, 2) if n else 0.0


def summed(ref: dict, game: str, areas=None, plats=None) -> dict[int, dict[str, float]]:
    """Per ts, each field of the reference documents of the selected servers, summed."""
    out: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (g, a, p, ts), doc in ref.items():
        if g == game and (areas is None or a in areas) and (plats is None or p in plats):
            for f, v in doc.items():
                if isinstance(v, (int, float)):
                    out[ts][f] += v
    return out


def last_login_day(ref: dict, game: str, areas=None, plats=None) -> int:
    """The last day with logins of the selection: after it no D+k figure is known (the sample's data ends)."""
    return max(ts for (g, a, p, ts) in ref["loginday"]
               if g == game and (areas is None or a in areas) and (plats is None or p in plats))


def due(ts: int, k: int, game: str, last: int) -> bool:
    from analytics.periods import add_days
    return add_days(ts, k, ZONES[game]) <= last


def get(client, path, **params):
    r = client.simulate_get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json


# -- the figures -----------------------------------------------------------------------------------

@pytest.mark.parametrize("game,areas,plats", [("dl", None, None), ("wsdx", None, None), ("dl", [DL], ["2001"]),
                                              ("dl", None, ["2001", "1059"])])
def test_cohorts_sum_the_selected_servers_counts(client, sample, game, areas, plats):
    expected = sample[2]
    params = {"game": game, **({"area": ",".join(areas)} if areas else {}), **({"plat": ",".join(plats)} if plats else {})}
    got = get(client, "/api/v1/cohorts", **params)
    want = []
    last = last_login_day(expected, game, areas, plats)
    for ts, s in sorted(summed(expected["loginretention"], game, areas, plats).items()):
        row = {"day": day(ts, game), "ts": ts, "cohort": int(s["cohort"])}
        for k in RET:
            row[f"d{k}"], row[f"d{k}_rate"] = (int(s[f"d{k}"]), pct(s[f"d{k}"], s["cohort"])) \
                if due(ts, k, game, last) else (None, None)
        want.append(row)
    assert got["rows"] == want and len(want) >= 3
    assert got["offsets"] == list(RET) and got["game"] == game
    total_cohort = sum(r["cohort"] for r in want)
    assert got["total"]["cohort"] == total_cohort
    d1 = [r for r in want if r["d1"] is not None]
    assert got["total"]["d1_rate"] == pct(sum(r["d1"] for r in d1), sum(r["cohort"] for r in d1))
    assert any(r["d1"] for r in want) and want[-1]["d1"] is None   # the last day's D1 is not known: null, not 0


def test_a_rate_over_two_servers_is_not_the_mean_of_their_rates(client, sample):
    rows = {p: get(client, "/api/v1/cohorts", game="dl", plat=p)["rows"] for p in ("2001", "1059")}
    both = get(client, "/api/v1/cohorts", game="dl")["rows"]
    a, b, ab = rows["2001"][0], rows["1059"][0], both[0]
    assert ab["d1"] == a["d1"] + b["d1"] and ab["cohort"] == a["cohort"] + b["cohort"]
    assert ab["d1_rate"] == pct(ab["d1"], ab["cohort"])
    assert a["cohort"] != b["cohort"] and ab["d1_rate"] != round((a["d1_rate"] + b["d1_rate"]) / 2, 2)


@pytest.mark.parametrize("game,plats", [("dl", None), ("wsdx", ["1059"])])
def test_monetization_series_and_ltv(client, sample, game, plats):
    expected = sample[2]
    got = get(client, "/api/v1/monetization", game=game, **({"plat": ",".join(plats)} if plats else {}))
    active = summed(expected["loginday"], game, None, plats)
    pays = summed(expected["payorderuser"], game, None, plats)
    traces = summed(expected["paytraceday"], game, None, plats)
    want = []
    for ts in sorted(set(active) | set(pays) | set(traces)):
        a, p = active.get(ts, {}), pays.get(ts, {})
        takings = round(p.get("pay_amount", 0), 6)
        want.append({"day": day(ts, game), "ts": ts, "active": a.get("count", 0), "payers": p.get("count", 0),
                     "takings": takings, "pay_count": p.get("pay_count", 0),
                     "first_time_payers": traces.get(ts, {}).get("new_pay_user", 0),
                     "arpu": money(takings, a.get("count", 0)), "arppu": money(takings, p.get("count", 0)),
                     "paying_rate": pct(p.get("count", 0), a.get("count", 0))})
    assert got["days"] == want and any(r["takings"] for r in want) and any(r["first_time_payers"] for r in want)
    ltv = []
    last = last_login_day(expected, game, None, plats)
    for ts, s in sorted(summed(expected["cohortltv"], game, None, plats).items()):
        row = {"day": day(ts, game), "ts": ts, "cohort": int(s["cohort"])}
        for k in LTV:
            amount = round(s[f"amount_d{k}"], 6)
            row.update({f"amount_d{k}": amount, f"payers_d{k}": int(s[f"payers_d{k}"]),
                        f"ltv_d{k}": money(amount, s["cohort"])} if due(ts, k, game, last) else
                       {f"amount_d{k}": None, f"payers_d{k}": None, f"ltv_d{k}": None})
        ltv.append(row)
    assert got["ltv"] == ltv and any(r["ltv_d1"] for r in ltv) and ltv[-1]["ltv_d7"] is None


def test_funnel_counts_and_step_rates(client, sample):
    expected = sample[2]
    got = get(client, "/api/v1/funnel", game="dl")
    want, tot = [], defaultdict(int)
    last = last_login_day(expected, "dl")
    for ts, s in sorted(summed(expected["funnelday"], "dl").items()):
        n = {k: int(s[k]) for k in ("signup", "role", "next_day_login", "first_payment")}
        row = {"day": day(ts, "dl"), "ts": ts, **n, "role_rate": pct(n["role"], n["signup"]),
               "next_day_login_rate": pct(n["next_day_login"], n["role"]),
               "first_payment_rate": pct(n["first_payment"], n["next_day_login"]),
               "overall_rate": pct(n["first_payment"], n["signup"])}
        if due(ts, 1, "dl", last):
            for k, v in n.items():
                tot[k] += v
        else:   # the data ends before its next day: the last two steps are not known
            row.update({k: None for k in ("next_day_login", "first_payment", "next_day_login_rate",
                                          "first_payment_rate", "overall_rate")})
        want.append(row)
    assert got["rows"] == want and got["steps"] == ["signup", "role", "next_day_login", "first_payment"]
    assert got["total"]["signup"] == tot["signup"] and got["total"]["first_payment"] == tot["first_payment"]
    assert got["total"]["overall_rate"] == pct(tot["first_payment"], tot["signup"]) and tot["first_payment"] > 0
    for r in want:
        assert r["signup"] >= r["role"] >= (r["next_day_login"] or 0) >= (r["first_payment"] or 0)


def test_from_and_to_select_days_in_the_games_zone(client, sample):
    all_rows = get(client, "/api/v1/cohorts", game="dl")["rows"]
    first = all_rows[0]["day"]
    one = get(client, "/api/v1/cohorts", game="dl", **{"from": first, "to": all_rows[1]["day"]})["rows"]
    assert [r["day"] for r in one] == [first]
    funnel = get(client, "/api/v1/funnel", game="dl", **{"from": all_rows[1]["day"]})["rows"]
    assert [r["day"] for r in funnel] == [r["day"] for r in all_rows[1:]]


def test_a_day_that_has_not_come_yet_is_null(sample):
    store, settings, expected = sample
    first = min(ts for (g, *_, ts) in expected["loginretention"] if g == "dl")
    # today is the first cohort's next day (12:00): its D1 has come, its D2 not yet
    c = falcon.testing.TestClient(create_app(settings, store, clock=lambda: first + 86400 + 12 * 3600))
    row = get(c, "/api/v1/cohorts", game="dl")["rows"][0]
    assert row["d1"] is not None and row["d2"] is None and row["d2_rate"] is None and row["d30"] is None
    ltv = get(c, "/api/v1/monetization", game="dl")["ltv"][0]
    assert ltv["ltv_d1"] is not None and ltv["ltv_d7"] is None


def test_today_is_the_day_documents_of_now(sample):
    store, settings, expected = sample
    ts = max(ts for (g, *_, ts) in expected["loginday"] if g == "dl")
    feed = LiveFeed(store, settings, clock=lambda: ts + 3600)
    snap = feed._snapshot(Selection("dl", [None], [None], ZONES["dl"]))
    logins = sum(d["count"] for (g, *_, t), d in expected["loginday"].items() if g == "dl" and t == ts)
    payers = sum(d["count"] for (g, *_, t), d in expected["payorderuser"].items() if g == "dl" and t == ts)
    takings = math.fsum(d["pay_amount"] for (g, *_, t), d in expected["payorderuser"].items() if g == "dl" and t == ts)
    assert (snap["day"], snap["active"], snap["payers"], snap["takings"]) == (day(ts, "dl"), logins, payers, takings)
    assert snap["arpu"] == money(takings, logins) and snap["paying_rate"] == pct(payers, logins)
    assert get(falcon.testing.TestClient(create_app(settings, store)), "/api/v1/today", game="dl")["active"] == 0


# -- validation: the rules of /api/v1/stats ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/cohorts", "/api/v1/monetization", "/api/v1/funnel", "/api/v1/today",
                                  "/api/v1/live"])
@pytest.mark.parametrize("query,message", [
    ("area=a1", "missing parameter 'game'"),
    ("game=dl&game=wsdx", "given more than once"),
    ("game=dl&sort=ts", "unknown parameter 'sort'"),
    ("game[$ne]=x", "unknown parameter"),
    ("game=$gt", "may not start with '$'"),
    ("game=dl&area=a1,$where", "may not start with '$'"),
    ("game=dl&plat=1,,2", "without empty items"),
])
def test_bad_parameters_are_a_400_naming_them(client, path, query, message):
    r = client.simulate_get(path, query_string=query)
    assert r.status_code == 400 and message in r.json["error"], (path, query, r.text)


@pytest.mark.parametrize("path", ["/api/v1/cohorts", "/api/v1/monetization", "/api/v1/funnel"])
def test_a_bad_time_is_a_400(client, path):
    r = client.simulate_get(path, query_string="game=dl&from=yesterday")
    assert r.status_code == 400 and "not a time: 'yesterday'" in r.json["error"]


# -- live ------------------------------------------------------------------------------------------

def test_the_live_feed_pushes_only_what_changed(sample):
    store, settings, expected = sample
    ts = max(ts for (g, *_, ts) in expected["loginday"] if g == "dl")
    now = [ts + 3600]
    feed = LiveFeed(store, settings, clock=lambda: now[0])
    try:
        client = feed.subscribe(Selection("dl", [None], [None], ZONES["dl"]))
        first = client.next(1)
        assert first["active"] > 0 and client.next(0.01) is None
        feed.changed("dl")
        assert feed.refresh({"dl"}) == 0             # the same figures: nothing pushed
        now[0] += 86400                              # the next day: nobody yet
        assert feed.refresh({"wsdx"}) == 0 and feed.refresh({"dl"}) == 1
        second = client.next(1)
        assert second["active"] == 0 and second["seq"] > first["seq"]
        body = b"".join([next(feed.stream(client))])
        assert body == b"retry: 2000\n\n"
    finally:
        feed.close()
    assert not feed.clients or all(not g for g in feed.clients.values())


def test_sse_frames_are_one_json_line():
    from analytics.web.live import sse_event
    frame = sse_event("today", {"active": 3, "day": "2015-01-08"}, 7)
    assert frame == b'id: 7\nevent: today\ndata: {"active":3,"day":"2015-01-08"}\n\n'
    assert orjson.loads(frame.split(b"data: ")[1]) == {"active": 3, "day": "2015-01-08"}
