"""The dashboard in a real headless Chromium (Playwright driving /usr/bin/chromium) against `analytics serve`.

The store is filled with known documents (Batch + apply); the page must show the
same figures the store holds, and changing the time-range picker must change them.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.periods import month_start, week_start
from analytics.query import parse_time, query
from analytics.store import open_store
from analytics.store.base import Batch

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]

CHROMIUM = os.environ.get("ANALYTICS_CHROMIUM", "/usr/bin/chromium")
TZ = "Asia/Shanghai"  # the default zone: game "dl" is not configured
DAYS = [parse_time(f"2015-01-{d:02d}", TZ) for d in range(5, 15)]
AREAS, PLATS = ("a1", "a2"), ("1", "2")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _playwright():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (CI installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed: pip install playwright "
                    "(its wheel ships the driver; no `playwright install` needed)")
    return sync_playwright


def fill(store) -> None:
    b = Batch()
    for i, ts in enumerate(DAYS):
        for j, area in enumerate(AREAS):
            for k, plat in enumerate(PLATS):
                key = {"game": "dl", "area": area, "plat": plat, "ts": ts}
                n = 10 + 3 * i + 5 * j + k
                b.upsert("loginday", key, set={"count": n, "type": "login"})
                b.upsert("activeday", key, set={"ac_user": n, "new_ac_user": i + j + 1, "old_ac_user": n - i - j - 1,
                                                "new_ac_rate": 0.0, "old_ac_rate": 0.0})
                b.upsert("signupday", key, set={"count": i + 2 * j + k + 1, "type": "signup"})
                b.upsert("createroleday", key, set={"count": i + j + 1, "type": "createrole"})
                b.upsert("payorderuser", key, set={"count": 1 + (i + j) % 3, "pay_amount": 60 * (i + 1) + j,
                                                   "pay_count": 2, "type": "pay"})
                b.upsert("coinday", key, set={"consumed": 100 + 10 * i, "gained": 80 + 7 * i, "consume_users": 3,
                                              "consume_times": 4})
                b.upsert("cointype", {**key, "type": "shop" if i % 2 else "upgrade"},
                         set={"consumed": 50 + i, "gained": 0, "times": 2})
                b.upsert("loginretention", key, set={"cohort": 20, **{f"d{d}": max(0, 20 - d - i)
                                                                        for d in (1, 2, 3, 4, 5, 6, 7, 14, 30)}})
        for area in AREAS:
            for plat in PLATS:
                for period, start in (("activeweek", week_start(ts, TZ)), ("activemonth", month_start(ts, TZ))):
                    b.upsert(period, {"game": "dl", "area": area, "plat": plat, "ts": start},
                             set={"ac_user": 100 + start % 97, "new_ac_user": 5, "old_ac_user": 95 + start % 97})
    for area in AREAS:
        b.upsert("serverstarttime", {"game": "dl", "area": area}, set={"ts": DAYS[0]})
        for plat in PLATS:
            for grade in (1, 2, 3, 10):
                b.upsert("userlevel", {"game": "dl", "area": area, "plat": plat, "grade": grade},
                         set={"count": grade * 3})
    store.apply(b)


def expected(store, frm: str, to: str, area: str | None = None) -> dict[str, str]:
    """What the page must show, computed from the store through the query layer."""
    lo, hi = parse_time(frm, TZ), parse_time(to, TZ) + 86400

    def total(coll, f, **kw):
        return sum(d[f] for d in query(store, coll, game="dl", area=area, ts_from=lo, ts_to=hi, **kw))

    def last(coll):
        docs = query(store, coll, game="dl", area=area, ts_to=hi)
        top = max(d["ts"] for d in docs)
        return sum(d["ac_user"] for d in docs if d["ts"] == top)
    fmt = lambda n: f"{n:,.2f}".rstrip("0").rstrip(".")
    return {"kpi-dau": fmt(last("activeday")), "kpi-wau": fmt(last("activeweek")), "kpi-mau": fmt(last("activemonth")),
            "kpi-new": fmt(total("activeday", "new_ac_user")), "kpi-signup": fmt(total("signupday", "count")),
            "kpi-createrole": fmt(total("createroleday", "count")), "kpi-payers": fmt(total("payorderuser", "count")),
            "kpi-revenue": fmt(total("payorderuser", "pay_amount"))}


@pytest.fixture
def served(tmp_path):
    db = tmp_path / "stats.db"
    with open_store(f"sqlite:///{db}") as store:
        store.setup()
        fill(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ANALYTICS_STORE": f"sqlite:///{db}"}
    proc = subprocess.Popen([sys.executable, "-m", "analytics.cli", "serve", "--port", str(port)], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "serving" in line or "on http" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
    store = open_store(f"sqlite:///{db}")
    yield f"http://127.0.0.1:{port}", store
    store.close()
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def kpis(page) -> dict[str, str]:
    page.wait_for_selector("body[data-ready='1']", timeout=20000)
    return {k: page.inner_text(f"#{k}") for k in ("kpi-dau", "kpi-wau", "kpi-mau", "kpi-new", "kpi-signup",
                                                  "kpi-createrole", "kpi-payers", "kpi-revenue")}


def test_dashboard_shows_the_stores_figures_and_follows_the_picker(served, tmp_path):
    sync_playwright = _playwright()
    url, store = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # the page closes its live stream (/api/v1/live) when the selection changes: not a failure
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}") if "/api/v1/live" not in r.url
                    else None)
            page.goto(f"{url}/?game=dl&from=2015-01-05&to=2015-01-14")
            full = kpis(page)
            assert full == expected(store, "2015-01-05", "2015-01-14"), page.inner_text("#status")
            assert page.locator("#retention tbody tr").count() == len(DAYS)
            assert page.input_value("#game") == "dl" and page.input_value("#area") == ""
            page.screenshot(path=str(os.environ.get("ANALYTICS_SCREENSHOT", tmp_path / "dashboard.png")),
                            full_page=True)

            page.evaluate("document.body.dataset.ready = '0'")
            page.fill("#from", "2015-01-10")
            page.dispatch_event("#from", "change")
            narrow = kpis(page)
            assert narrow == expected(store, "2015-01-10", "2015-01-14")
            assert narrow["kpi-signup"] != full["kpi-signup"] and narrow["kpi-revenue"] != full["kpi-revenue"]
            assert page.locator("#retention tbody tr").count() == 5

            page.evaluate("document.body.dataset.ready = '0'")
            page.select_option("#area", "a2")
            assert kpis(page) == expected(store, "2015-01-10", "2015-01-14", area="a2")
            assert not errors, errors
        finally:
            browser.close()
