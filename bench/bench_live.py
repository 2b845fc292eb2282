"""Event-to-screen latency of the live dashboard: POST an event, see it on the open page.

    .venv/bin/python bench/bench_live.py [--events 200] [--interval 0.05] [--load 5000] [--flush-seconds 1.0,0.5]

For each flush setting, `analytics run` (the whole default topology, the HTTP intake,
the stats API and the dashboard, one process) starts over a fresh SQLite store in a
temporary directory, and headless Chromium (Playwright, /usr/bin/chromium) opens the
dashboard, which follows today's figures over Server-Sent Events (/api/v1/live).
Then, once without load and once while a separate process POSTs `--load` events/s
(logins of new users of another game, in batches of `--batch`), this process POSTs
`--events` logins of new users of game 'dl', one per request, `--interval` s apart.
Event i is on the screen at the first page update (timed in the page with Date.now()
in the animation frame after the DOM changed) whose active-user count reaches the
count before the burst + i + 1; its latency is that time minus the time just before
its POST was sent (same machine, same clock). Prints p50/p90/p99/max per run, the
load reached and the intake's 503 answers. Asserts nothing.

`--flush-seconds` sets flush_seconds of the hour and day counting bolts (the event
crosses two flushes: loginhour's, then loginday's); 1.0 is the default configuration.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.live_site import LiveSite  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
COUNTING = ("loginhour", "loginday", "signuphour", "signupday", "createrolehour", "createroleday")


# -- the load: a separate process ------------------------------------------------------------

def load_worker(url: str, rate: float, batch: int, seconds: float, threads: int) -> None:
    """POST `rate` events/s in batches for `seconds`; print {"sent", "accepted", "busy", "seconds"} as JSON."""
    tag = uuid.uuid4().hex[:6]
    stats = {"sent": 0, "accepted": 0, "busy": 0, "errors": 0}
    lock = threading.Lock()
    start = time.monotonic()
    per_thread = rate / threads

    def run(t: int) -> None:
        s = requests.Session()
        i = 0
        while True:
            due = start + i * batch / per_thread
            now = time.monotonic()
            if due - start >= seconds:
                return
            if due > now:
                time.sleep(due - now)
            ts = int(time.time())
            events = [{"game": "load", "area": f"s{(i + k) % 8}", "plat": "1", "uid": f"{tag}-{t}-{i}-{k}",
                       "ts": ts, "code": "login_logcount"} for k in range(batch)]
            try:
                r = s.post(url + "/api/v1/event/save", json=events, timeout=30)
                with lock:
                    stats["sent"] += batch
                    if r.status_code == 200:
                        stats["accepted"] += r.json()["accepted"]
                    elif r.status_code == 503:
                        stats["busy"] += batch
                    else:
                        stats["errors"] += batch
            except requests.RequestException:
                with lock:
                    stats["errors"] += batch
            i += 1

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({**stats, "seconds": round(time.monotonic() - start, 2)}), flush=True)


# -- one measured burst ----------------------------------------------------------------------

def today(url: str) -> dict:
    return requests.get(url + "/api/v1/today", params={"game": "dl"}, timeout=10).json()


def burst(site: LiveSite, page, events: int, interval: float) -> list[float]:
    """POST `events` new dl users one by one; the latency of each to the screen (ms)."""
    page.wait_for_function("window.__live.length > 0 && window.__live.at(-1).via === 'sse'", timeout=30000)
    time.sleep(1.5)                                      # let the page settle on the current figure
    base = today(site.url)["active"]
    page.wait_for_function(f"window.__live.at(-1).active >= {base}", timeout=30000)
    session = requests.Session()
    tag = uuid.uuid4().hex[:8]
    sent = []
    for i in range(events):
        t = time.time() * 1000
        r = session.post(site.url + "/api/v1/event/save", timeout=30,
                         json={"game": "dl", "area": "a1", "plat": "1", "uid": f"m-{tag}-{i}", "ts": int(t / 1000),
                               "code": "login_logcount"})
        if r.status_code != 200:
            raise RuntimeError(f"measured event refused: {r.status_code} {r.text}")
        sent.append(t)
        time.sleep(max(0.0, interval - (time.time() * 1000 - t) / 1000))
    page.wait_for_function(f"window.__live.at(-1).active >= {base + events}", timeout=60000)
    shown = page.evaluate("window.__live.map(u => [u.active, u.shown])")
    return [next(t for a, t in shown if a >= base + i + 1) - s for i, s in enumerate(sent)]


def figures(lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return f"p50 {q[49]:6.0f} ms   p90 {q[89]:6.0f} ms   p99 {q[98]:6.0f} ms   max {max(lat):6.0f} ms"


def run_config(flush: float, args: argparse.Namespace, sync_playwright) -> list[str]:
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        comps = {name: {"flush_seconds": flush} for name in COUNTING}
        with LiveSite(Path(tmp), f"sqlite:///{tmp}/live.db", zones={"dl": "Asia/Shanghai"}, components=comps) as site:
            requests.post(site.url + "/api/v1/event/save", timeout=10, json={
                "game": "dl", "area": "a1", "plat": "1", "uid": "warm-up", "ts": int(time.time()),
                "code": "login_logcount"})
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                    g["game"] == "dl" for g in requests.get(site.url + "/api/v1/games", timeout=5).json()["games"]):
                time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(f"{site.url}/?game=dl&view=retention")
                for load in (0, args.load):
                    worker = None
                    if load:
                        seconds = args.events * args.interval + 8
                        worker = subprocess.Popen([sys.executable, __file__, "--load-worker", site.url, str(load),
                                                   str(args.batch), str(seconds), str(args.threads)],
                                                  stdout=subprocess.PIPE, text=True)
                        time.sleep(3)                      # the load runs before the burst starts
                    t0 = time.monotonic()
                    lat = burst(site, page, args.events, args.interval)
                    took = time.monotonic() - t0
                    line = f"flush {flush:.2f} s  load {load:>6,}/s  " + figures(lat)
                    if worker is not None:
                        got = json.loads(worker.communicate(timeout=120)[0].strip().splitlines()[-1])
                        line += (f"   load reached {got['accepted'] / got['seconds']:,.0f} events/s accepted "
                                 f"({got['busy']:,} answered 503, {got['errors']} errors)")
                    out.append(line + f"   [{args.events} events in {took:.1f}s]")
                    print(out[-1], flush=True)
                browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200, help="measured events per burst")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between measured events")
    ap.add_argument("--load", type=int, default=5000, help="background events/s during the second burst")
    ap.add_argument("--batch", type=int, default=100, help="events per background request")
    ap.add_argument("--threads", type=int, default=4, help="background client threads")
    ap.add_argument("--flush-seconds", default="1.0,0.5",
                    help="comma-separated flush_seconds of the counting bolts, one run each")
    ap.add_argument("--load-worker", nargs=5, metavar=("URL", "RATE", "BATCH", "SECONDS", "THREADS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_worker:
        url, rate, batch, seconds, threads = args.load_worker
        load_worker(url, float(rate), int(batch), float(seconds), int(threads))
        return
    from playwright.sync_api import sync_playwright
    print(f"event-to-screen latency: {args.events} logins POSTed {args.interval * 1000:.0f} ms apart, "
          f"dashboard in headless Chromium on /api/v1/live")
    lines = []
    for flush in (float(x) for x in args.flush_seconds.split(",")):
        lines += run_config(flush, args, sync_playwright)
    print("\nsummary")
    for line in lines:
        print("  " + line)


if __name__ == "__main__":
    main()
