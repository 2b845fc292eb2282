"""HTTP intake throughput: wrk (or a gevent + requests fallback) against a running intake + topology.

    .venv/bin/python bench/bench_http.py [--seconds 10] [--connections 32]

Starts, in this process, the http spout and the login bolts (loginhour, loginday)
over a SQLite store in a temporary directory, on 127.0.0.1 with a free port;
POSTs one gamelog login event per request (a different uid each time); prints
requests/s, p50/p99 latency, and events/s that reached the store (loginhour's
received count until it caught up, over the time since the first request) and the
distinct users loginhour stored (every request carries a new uid: it should equal the accepted count).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gevent
import gevent.subprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.config import load_settings  # noqa: E402
from analytics.store import open_store  # noqa: E402
from analytics.topology import ComponentSpec, LocalRunner, Topology  # noqa: E402

LUA = r"""
counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local body = string.format('{"game":"dl","area":"a1","plat":"1","uid":"u%d-%d","ts":%d,"code":"login_logcount"}',
                             tid, counter, TS)
  return wrk.format(nil, "/api/v1/event/save", nil, body)
end
"""


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def run_wrk(url: str, seconds: int, connections: int, tmp: Path, ts: int) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text(LUA.replace("TS", str(ts)))
    out = gevent.subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                                 url], stdout=gevent.subprocess.PIPE, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"tool": "wrk", "rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": total,
            "errors": int(non2xx.group(1)) if non2xx else 0}


def run_python(url: str, seconds: int, connections: int, ts: int) -> dict[str, float]:
    """Fallback without wrk: requests in gevent's thread pool (the server keeps the hub)."""
    import requests
    from gevent.threadpool import ThreadPool
    pool = ThreadPool(min(connections, 16))
    lat: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    def worker(n: int) -> tuple[list[float], int]:
        s, mine, bad, i = requests.Session(), [], 0, 0
        while time.monotonic() < deadline:
            i += 1
            t = time.perf_counter()
            r = s.post(url + "/api/v1/event/save", json={"game": "dl", "area": "a1", "plat": "1",
                                                          "uid": f"p{n}-{i}", "ts": ts, "code": "login_logcount"})
            mine.append((time.perf_counter() - t) * 1000)
            bad += r.status_code != 200
        return mine, bad
    start = time.monotonic()
    for mine, bad in [r.get() for r in [pool.spawn(worker, n) for n in range(min(connections, 16))]]:
        lat += mine
        errors += bad
    lat.sort()
    return {"tool": "python", "rps": len(lat) / (time.monotonic() - start), "p50_ms": lat[len(lat) // 2],
            "p99_ms": lat[int(len(lat) * 0.99)], "requests": len(lat), "errors": errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_http_"))
    try:
        settings = load_settings(env={}, data_dir=str(tmp / "data"))
        settings.extra["http"] = {"port": 0, "queue_size": 20000}
        store = open_store(f"sqlite:///{tmp / 'stats.db'}")
        store.setup()
        topo = Topology([ComponentSpec("http", "spouts.http_intake:HttpIntakeSpout"),
                         ComponentSpec("loginhour", "bolts.login:LoginHourBolt"),
                         ComponentSpec("loginday", "bolts.login:LoginDayBolt")])
        runner = LocalRunner(topo, settings, store=store).start()
        spout, bolt = runner.components["http"], runner.components["loginhour"]
        spout.ready.wait(10)
        ts = int(time.time()) - 60
        started = time.monotonic()
        fig = run_wrk(spout.url, args.seconds, args.connections, tmp, ts) if shutil.which("wrk") \
            else run_python(spout.url, args.seconds, args.connections, ts)
        deadline = time.monotonic() + 60
        while (spout.intake.queue.qsize() or bolt.counters.received.get("gamelog.login_logcount", 0)
               < sum(spout.counters.emitted.values())) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        emitted = sum(spout.counters.emitted.values())
        flushes = bolt.counters.flushes
        while bolt.counters.flushes < flushes + 2 and time.monotonic() < deadline:
            gevent.sleep(0.05)  # the tuples received are stored by the next flush
        reached = bolt.counters.received.get("gamelog.login_logcount", 0)
        elapsed = time.monotonic() - started
        stored = sum(d["count"] for d in store.find("loginhour"))
        runner.stop()
        store.close()
        print(f"tool {fig['tool']}  {args.connections} connections  {args.seconds}s")
        print(f"requests/s {fig['rps']:.0f}  p50 {fig['p50_ms']:.2f} ms  p99 {fig['p99_ms']:.2f} ms  "
              f"requests {fig['requests']}  non-2xx {fig['errors']}")
        print(f"accepted {emitted}  reached the bolts {reached}  events/s to the store {reached / elapsed:.0f}  "
              f"distinct users stored (loginhour) {stored}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
