"""The studio's views in a real headless Chromium (Playwright driving /usr/bin/chromium) against `analytics run`.

A generated sample (40 days, two servers of game 'dl') is replayed through the whole
topology into a SQLite file; `analytics run` then serves it (intake, stats API and
dashboard) with the default topology running. The retention heatmap, the monetization
and LTV tables and the funnel must show exactly the figures the API returns; a POSTed
event must change the open page's "today" figures, pushed over Server-Sent Events and,
with `live=poll`, by polling. A screenshot of each view is written (to
$ANALYTICS_SCREENSHOT_DIR when set: the README's images in docs/img/ come from here).
The event-to-screen latency of a small burst is printed, not asserted
(bench/bench_live.py measures it under load).
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
import requests

from analytics.sample import generate
from tests.integration.test_dashboard_browser import ARGS, CHROMIUM, _playwright
from tests.support.live_site import LiveSite
from tests.support.replay_all import replay_all

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

ZONES = {"dl": "Asia/Shanghai"}
RANGE = {"from": "2015-01-07", "to": "2015-02-15"}         # the generated days (to inclusive on the page)
API_RANGE = {"from": "2015-01-07", "to": "2015-02-16"}     # the API's `to` is exclusive


def fmt(n) -> str:
    """The page's number format (toLocaleString en-US, at most two decimals)."""
    return "–" if n is None else f"{n:,.2f}".rstrip("0").rstrip(".")


def money(n) -> str:
    """The page's money format: always two decimals."""
    return "–" if n is None else f"{n:,.2f}"


def pct(n) -> str:
    """The page's rate format: always two decimals."""
    return "" if n is None else f"{n:,.2f}%"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio")
    logs = tmp / "logs"
    generate(logs, seed=16, games=ZONES, days=40, users=900, areas=2, activity=0.08, tag="studio")
    store = f"sqlite:///{tmp / 'studio.db'}"
    report = replay_all({"store": store, "data_dir": str(tmp / "data"), "zones": ZONES,
                         "gamelogs": {"dl": [str(logs / "gamelog_dl_studio.txt")]},
                         "payments": [str(logs / "payment_studio.txt")],
                         "syncusers": [str(logs / "syncuser_studio.txt")], "timeout": 120})
    assert not report.problems(), report.problems()
    with LiveSite(tmp, store, zones=ZONES) as s:
        yield s


@pytest.fixture(scope="module")
def browser(site):
    sync_playwright = _playwright()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}") if "/api/v1/live" not in r.url else None)
    yield page
    page.close()
    assert not errors, errors


def shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("ANALYTICS_SCREENSHOT_DIR", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


def open_view(page, site, view: str, **extra) -> None:
    q = "&".join(f"{k}={v}" for k, v in {"game": "dl", **RANGE, "view": view, **extra}.items())
    page.goto(f"{site.url}/?{q}")
    page.wait_for_selector("body[data-ready='1']", timeout=30000)
    assert "Could not" not in page.inner_text("#status"), page.inner_text("#status")


def api(site, path: str, **params) -> dict:
    ranged = {} if path == "/api/v1/today" else API_RANGE
    r = requests.get(site.url + path, params={"game": "dl", **ranged, **params}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def table(page, selector: str) -> list[list[dict]]:
    """Every body row of a table: per cell its text, title, data-count and background."""
    return page.evaluate("""sel => [...document.querySelectorAll(sel + ' tbody tr')].map(tr => [...tr.cells].map(td => ({
        text: td.textContent, title: td.title, count: td.dataset.count ?? null, field: td.dataset.field ?? null,
        bg: getComputedStyle(td).backgroundColor})))""", selector)


def shown(page, site, view: str, path: str, selector: str, rows: str) -> tuple[dict, list[list[dict]]]:
    """Open a view; the API's answer and the rows of the view's table (one per generated day)."""
    open_view(page, site, view)
    want = api(site, path)
    got = table(page, selector)
    assert len(got) == len(want[rows]) == 40
    return want, got


def test_the_heatmap_shows_the_cohort_table_of_the_api(site, page, tmp_path):
    want, got = shown(page, site, "retention", "/api/v1/cohorts", "#heatmap", "rows")
    for row, cells in zip(want["rows"], got):
        assert [c["text"] for c in cells[:2]] == [row["day"], fmt(row["cohort"])]
        for k, c in zip(want["offsets"], cells[2:]):
            assert c["text"] == pct(row[f"d{k}_rate"]), (row["day"], k)
            if row[f"d{k}"] is None:   # after the data's last day: not known yet, a blank cell
                assert c["title"] == "not yet" and c["count"] is None
                continue
            assert c["count"] == str(row[f"d{k}"]) and c["title"] == f"{fmt(row[f'd{k}'])} of {fmt(row['cohort'])} users"
    foot = page.evaluate("[...document.querySelectorAll('#heatmap tfoot th')].map(th => th.textContent)")
    assert foot[1:] == [fmt(want["total"]["cohort"])] + [pct(want["total"][f"d{k}_rate"]) for k in want["offsets"]]
    # a colour scale: the highest and the lowest rate of the table get different colours
    cells = [c for r in got for c in r[2:] if c["text"]]
    top = max(cells, key=lambda c: float(c["text"].rstrip("%")))
    low = min(cells, key=lambda c: float(c["text"].rstrip("%")))
    assert top["bg"] != low["bg"]
    page.screenshot(path=str(shots_dir(tmp_path) / "retention.png"), full_page=True)


def test_a_selection_of_servers_sums_their_counts(site, page):
    open_view(page, site, "retention")
    areas = [o for o in page.eval_on_selector_all("#area option", "os => os.map(o => o.value)") if o]
    assert len(areas) >= 2
    page.evaluate("document.body.dataset.ready = '0'")
    page.select_option("#area", areas[0])
    page.wait_for_selector("body[data-ready='1']")
    want = api(site, "/api/v1/cohorts", area=areas[0])
    got = table(page, "#heatmap")
    assert [c["text"] for c in got[0]] == [want["rows"][0]["day"], fmt(want["rows"][0]["cohort"])] + \
        [pct(want["rows"][0][f"d{k}_rate"]) for k in want["offsets"]]
    page.evaluate("document.body.dataset.ready = '0'")
    page.select_option("#area", areas[:2])
    page.wait_for_selector("body[data-ready='1']")
    assert "area=" + "%2C".join(areas[:2]) in page.url
    both = api(site, "/api/v1/cohorts", area=",".join(areas[:2]))
    one = [api(site, "/api/v1/cohorts", area=a)["rows"][0] for a in areas[:2]]
    assert both["rows"][0]["cohort"] == one[0]["cohort"] + one[1]["cohort"]
    assert table(page, "#heatmap")[0][1]["text"] == fmt(both["rows"][0]["cohort"])


def test_the_monetization_tables_show_the_api_figures(site, page, tmp_path):
    want, got = shown(page, site, "monetization", "/api/v1/monetization", "#monetization", "days")
    for d, cells in zip(want["days"], got):
        assert {c["field"]: c["text"] for c in cells} == {
            "day": d["day"], "active": fmt(d["active"]), "payers": fmt(d["payers"]), "takings": money(d["takings"]),
            "arpu": money(d["arpu"]), "arppu": money(d["arppu"]), "paying_rate": pct(d["paying_rate"]),
            "first_time_payers": fmt(d["first_time_payers"])}
    assert any(d["takings"] for d in want["days"]) and any(d["first_time_payers"] for d in want["days"])
    ltv = table(page, "#ltv")
    assert len(ltv) == len(want["ltv"]) == 40
    for r, cells in zip(want["ltv"], ltv):
        assert [c["text"] for c in cells] == [r["day"], fmt(r["cohort"])] + [money(r[f"ltv_d{k}"]) if r[f"ltv_d{k}"] is not None else "" for k in (1, 7, 14, 30)]
        if r["amount_d30"] is None:   # D30 after the data's last day: not known yet
            assert cells[5]["title"] == "not yet"
            continue
        assert cells[5]["title"] == f"{money(r['amount_d30'])} paid by {fmt(r['payers_d30'])} of {fmt(r['cohort'])} users"
    page.screenshot(path=str(shots_dir(tmp_path) / "monetization.png"), full_page=True)


def test_the_funnel_shows_the_api_figures(site, page, tmp_path):
    want, got = shown(page, site, "funnel", "/api/v1/funnel", "#funnel", "rows")
    steps = want["steps"]
    for r, cells in zip(want["rows"], got):
        expect = {"signup": fmt(r["signup"]), "overall_rate": pct(r["overall_rate"])}
        for s in steps[1:]:
            expect[s], expect[s + "_rate"] = "" if r[s] is None else fmt(r[s]), pct(r[s + "_rate"])
        assert cells[0]["text"] == r["day"] and {c["field"]: c["text"] for c in cells[1:]} == expect
    total = page.evaluate("Object.fromEntries([...document.querySelectorAll('#funnel-total td[data-field]')]"
                          ".map(td => [td.dataset.field, td.textContent]))")
    t = want["total"]
    assert total == {**{s: fmt(t[s]) for s in steps}, **{s + "_rate": pct(t[s + "_rate"]) for s in steps[1:]},
                     "signup_rate": "", "overall_rate": pct(t["overall_rate"])}
    assert t["signup"] > t["role"] > t["next_day_login"] >= t["first_payment"] > 0
    page.screenshot(path=str(shots_dir(tmp_path) / "funnel.png"), full_page=True)


def _today(page) -> dict[str, str]:
    return {k: page.inner_text(f"#live-{k}") for k in ("active", "signup", "role")}


def _post(site, events: list[dict]) -> float:
    r = requests.post(site.url + "/api/v1/event/save", json=events, timeout=10)
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
    return time.time() * 1000


def test_the_open_page_follows_todays_figures(site, page, tmp_path):
    from datetime import datetime
    from zoneinfo import ZoneInfo
    today = datetime.now(ZoneInfo(ZONES["dl"])).strftime("%Y-%m-%d")
    open_view(page, site, "overview", to=today)   # today's strip shows when the range reaches today
    assert page.is_visible("#today")
    page.wait_for_function("window.__live.length > 0 && window.__live.at(-1).via === 'sse'", timeout=15000)
    before = api(site, "/api/v1/today")
    assert _today(page) == {"active": fmt(before["active"]), "signup": fmt(before["signup"]),
                            "role": fmt(before["role"])}
    now = int(time.time())
    ev = {"game": "dl", "area": "a1", "plat": "1", "ts": now}
    _post(site, [{**ev, "uid": "live-1", "code": c} for c in ("signup_logcount", "createrole_logcount",
                                                              "login_logcount")])
    page.wait_for_function(f"document.getElementById('live-role').textContent === '{fmt(before['role'] + 1)}' && "
                           f"document.getElementById('live-active').textContent === '{fmt(before['active'] + 1)}'",
                           timeout=15000)
    assert page.evaluate("window.__live.at(-1).via") == "sse"
    # a burst: one new user a POST, 100 ms apart; when does each show on the screen?
    base, sent = before["active"] + 1, []
    for i in range(20):
        sent.append(_post(site, [{**ev, "uid": f"burst-{now}-{i}", "code": "login_logcount"}]))
        time.sleep(0.1)
    page.wait_for_function(f"window.__live.length && window.__live.at(-1).active >= {base + 20}", timeout=20000)
    shown = page.evaluate("window.__live.map(u => [u.active, u.shown])")
    lat = sorted(next(t for a, t in shown if a >= base + i + 1) - s for i, s in enumerate(sent))
    print(f"\nevent-to-screen over SSE, 20 events 100 ms apart, no load: p50 {statistics.median(lat):.0f} ms, "
          f"max {lat[-1]:.0f} ms")
    assert api(site, "/api/v1/today")["active"] == base + 20
    page.locator("#today").screenshot(path=str(shots_dir(tmp_path) / "live.png"))
    open_view(page, site, "overview")   # the generated days only: today's strip stays hidden on them
    assert page.is_hidden("#today")
    page.screenshot(path=str(shots_dir(tmp_path) / "overview.png"), full_page=True)


def test_polling_when_the_stream_is_not_used(site, page):
    open_view(page, site, "overview", live="poll")
    page.wait_for_function("window.__live.length > 0", timeout=15000)
    before = api(site, "/api/v1/today")
    assert page.evaluate("window.__live.at(-1).via") == "poll" and "polling" in page.inner_text("#live-status")
    _post(site, [{"game": "dl", "area": "a2", "plat": "1", "ts": int(time.time()), "uid": "poll-1",
                  "code": "login_logcount"}])
    page.wait_for_function(f"document.getElementById('live-active').textContent === '{fmt(before['active'] + 1)}'",
                           timeout=15000)
    assert page.evaluate("window.__live.at(-1).via") == "poll"
