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
NAMES = {"a1": "Dragon Isle", "a2": "Frozen Tower"}   # the logs' data.server_name
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
        b.upsert("serverstarttime", {"game": "dl", "area": area},
                 set={"ts": DAYS[0], "server_name_at": f"{DAYS[-1]:012d}\t{NAMES[area]}"})
        for plat in PLATS:
            for grade in (1, 2, 3, 10):
                b.upsert("userlevel", {"game": "dl", "area": area, "plat": plat, "grade": grade},
                         set={"count": grade * 3})
    store.apply(b)


def expected(store, frm: str, to: str, area: str | None = None, plat: str | None = None) -> dict[str, str]:
    """What the page must show, computed from the store through the query layer."""
    lo, hi = parse_time(frm, TZ), parse_time(to, TZ) + 86400

    def total(coll, f, **kw):
        return sum(d[f] for d in query(store, coll, game="dl", area=area, plat=plat, ts_from=lo, ts_to=hi, **kw))

    def last(coll):
        docs = query(store, coll, game="dl", area=area, plat=plat, ts_to=hi)
        top = max(d["ts"] for d in docs)
        return sum(d["ac_user"] for d in docs if d["ts"] == top)
    fmt = lambda n: f"{n:,.2f}".rstrip("0").rstrip(".")
    return {"kpi-dau": fmt(last("activeday")), "kpi-wau": fmt(last("activeweek")), "kpi-mau": fmt(last("activemonth")),
            "kpi-new": fmt(total("activeday", "new_ac_user")), "kpi-signup": fmt(total("signupday", "count")),
            "kpi-createrole": fmt(total("createroleday", "count")), "kpi-payers": fmt(total("payorderuser", "count")),
            "kpi-revenue": f"{total('payorderuser', 'pay_amount'):,.2f}"}  # money: always two decimals


READ_KEY = "dashboard-read-key-0123456789"


@pytest.fixture(params=["open"])
def served(tmp_path, request):
    """`analytics serve` over a filled store; with the param "keys", [http] read_keys is set."""
    db = tmp_path / "stats.db"
    with open_store(f"sqlite:///{db}") as store:
        store.setup()
        fill(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "serve.toml"
    text = f'[games.dl]\ntz = "{TZ}"\ncurrency = "CNY"\n'
    if request.param == "keys":
        text += f'[http]\nread_keys = {{ "{READ_KEY}" = "studio" }}\n'
    cfg.write_text(text)
    env = {**os.environ, "ANALYTICS_STORE": f"sqlite:///{db}", "ANALYTICS_CONFIG": str(cfg)}
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


@pytest.mark.parametrize("served", ["keys"], indirect=True)
def test_with_read_keys_the_dashboard_asks_once_and_its_cookie_carries_fetch_and_eventsource(served):
    sync_playwright = _playwright()
    url, store = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1500})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            first = page.goto(f"{url}/?game=dl&from=2015-01-05&to=2015-01-14")
            assert first.status == 401 and page.locator("#key").count() == 1
            page.fill("#key", "not-the-key")
            page.click("#open")
            assert "not a read key" in page.inner_text("#error")
            page.fill("#key", READ_KEY)
            page.click("#open")
            # back on the same view, every figure fetched with the cookie
            assert kpis(page) == expected(store, "2015-01-05", "2015-01-14"), page.inner_text("#status")
            assert "game=dl" in page.url and "from=2015-01-05" in page.url and "/login" not in page.url
            cookie = next(c for c in context.cookies() if c["name"] == "analytics_read")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] == READ_KEY
            assert page.evaluate("document.cookie") == ""    # no script can read the key
            # the live view's EventSource carries the cookie too: its first event arrives over SSE
            page.wait_for_function("window.__live.some((u) => u.via === 'sse')", timeout=20000)
            # a second visit asks for nothing
            page.goto(f"{url}/?game=dl&from=2015-01-10&to=2015-01-14")
            assert kpis(page) == expected(store, "2015-01-10", "2015-01-14")
            assert not errors, errors
        finally:
            browser.close()


def test_platform_filter_currency_blank_future_cells_shared_days_and_csv_export(served, tmp_path):
    """What a studio's analyst needs of it: a platform filter, revenue in its currency, no 0 % for
    retention not known yet, every daily chart on the same days, straight lines, no 'Today' strip
    on a historical range, and the visible tables as CSV."""
    sync_playwright = _playwright()
    url, store = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/?game=dl&from=2015-01-05&to=2015-01-14")
            kpis(page)
            assert page.evaluate("[...document.querySelectorAll('#plat option')].map(o => o.value)") == ["", *PLATS]
            assert "(CNY)" in page.inner_text("#cards") and page.is_hidden("#today")
            servers = page.evaluate("[...document.querySelectorAll('#area option')].map(o => [o.value, o.textContent])")
            assert servers == [["", "All servers"], ["a1", "Dragon Isle"], ["a2", "Frozen Tower"]]

            # retention of the last days is not known yet: blank, not 0 %
            rows = page.evaluate("""[...document.querySelectorAll('#retention tbody tr')].map(tr =>
                [...tr.cells].map(td => td.textContent))""")
            by_day = {r[0]: r[2:] for r in rows}      # D1..D7, D14, D30
            assert by_day["2015-01-14"][0] == "" and by_day["2015-01-13"][0].endswith("%")
            assert by_day["2015-01-10"][6] == "" and by_day["2015-01-10"][2].endswith("%")   # D7 past the end; D3 not
            assert all(cell == "" for cell in by_day["2015-01-05"][7:])                     # D14, D30

            charts = page.evaluate("""['chart-active', 'chart-signup', 'chart-pay', 'chart-coin'].map(id => {
                const c = Chart.getChart(id); return {labels: c.data.labels, tension: c.data.datasets.map(d => d.tension)}; })""")
            days = [f"2015-01-{d:02d}" for d in range(5, 15)]
            assert all(c["labels"] == days for c in charts), charts
            assert all(t == 0 for c in charts for t in c["tension"])

            page.evaluate("document.body.dataset.ready = '0'")
            page.select_option("#plat", "2")
            assert kpis(page) == expected(store, "2015-01-05", "2015-01-14", plat="2")
            assert "plat=2" in page.url

            with page.expect_download() as dl:
                page.click("#csv")
            text = Path(dl.value.path()).read_text()
            assert text == page.evaluate("window.__csv()")
            lines = text.splitlines()
            assert lines[0].startswith("Login retention") and lines[1].startswith("cohort day,new roles,D1")
            first = page.evaluate("[...document.querySelector('#retention tbody tr').cells].map(c => c.textContent)")
            assert lines[2] == ",".join(first)
            assert not errors, errors
        finally:
            browser.close()
