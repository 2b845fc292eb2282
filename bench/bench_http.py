"""HTTP intake throughput, latency and memory: keep-alive clients in a separate process against a running intake.

    .venv/bin/python bench/bench_http.py [--seconds 10] [--connections 1,64] [--soak 60] [--json]

Starts, in this process, the http spout and the login bolts (loginhour, loginday)
over a SQLite store in a temporary directory, on 127.0.0.1 with a free port.
The load comes from a child process (this file with --client: gevent and raw
sockets, one HTTP/1.1 keep-alive connection per simulated client, one request in
flight per connection), so the server keeps its own core and the figures are the
server's, not a Python HTTP library's. Each request POSTs one gamelog login event
of a new user (integer uids: the store's uid dictionary stays out of the memory
figure). For each connection count it prints requests/s, p50/p99 latency, non-2xx
answers and reconnects (a server that closes kept-alive connections shows here).

Then a soak: --soak seconds of load on the largest connection count, with the
server's RSS (VmRSS of this process: server, bolts and store together) before, at
its peak, and after the load once the bolts caught up; and at the end the events
accepted, the events that reached the bolts, and the distinct users stored
(loginhour), which must equal the accepted count.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: A request the client sends: the body's uid and ts are filled in per request.
HEAD = (b"POST /api/v1/event/save HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n")
BODY = b'{"game":"dl","area":"a1","plat":"1","uid":%d,"ts":%d,"code":"login_logcount"}'
#: The same with a string uid (--string-uids): such uids go through the store's per-game uid dictionary.
BODY_STR = b'{"game":"dl","area":"a1","plat":"1","uid":"u%d","ts":%d,"code":"login_logcount"}'


# -- the client (child process) ------------------------------------------------------------
def _read_response(sock: Any, buf: bytearray) -> tuple[int, bool]:
    """Read one response from `sock` (leftovers stay in `buf`); (status, whether the server closes)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
    length = int(headers.get("content-length", "0"))
    while len(buf) < end + 4 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        buf += chunk
    del buf[:end + 4 + length]
    return status, headers.get("connection", "").lower() == "close"


def client_main(host: str, port: int, seconds: float, connections: int, ts: int, first_uid: int,
                strings: bool = False) -> dict[str, Any]:
    """Load the server for `seconds` from `connections` keep-alive connections; the figures as a dict."""
    template = BODY_STR if strings else BODY
    import gevent
    import gevent.socket as gsocket
    lat: list[float] = []
    counts = {"errors": 0, "reconnects": 0, "failures": 0}
    deadline = time.monotonic() + seconds

    def connect() -> Any:
        s = gsocket.create_connection((host, port))
        s.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)  # the client side never stalls
        return s

    def worker(n: int) -> None:
        uid = first_uid + n * 10_000_000
        sock, buf = connect(), bytearray()
        while time.monotonic() < deadline:
            uid += 1
            body = template % (uid, ts)
            t = time.perf_counter()
            try:
                sock.sendall(HEAD % len(body) + body)
                status, close = _read_response(sock, buf)
            except OSError:
                counts["failures"] += 1
                sock.close()
                sock, buf = connect(), bytearray()
                continue
            lat.append((time.perf_counter() - t) * 1000)
            counts["errors"] += status != 200
            if close:
                counts["reconnects"] += 1
                sock.close()
                sock, buf = connect(), bytearray()
        sock.close()

    started = time.monotonic()
    gevent.joinall([gevent.spawn(worker, n) for n in range(connections)])
    elapsed = time.monotonic() - started
    lat.sort()
    pick = (lambda q: lat[min(len(lat) - 1, int(len(lat) * q))]) if lat else (lambda q: float("nan"))
    return {"connections": connections, "seconds": round(elapsed, 2), "requests": len(lat),
            "rps": len(lat) / elapsed, "p50_ms": pick(0.50), "p99_ms": pick(0.99), **counts}


# -- the server side (this process) ----------------------------------------------------------
def rss_mb() -> float:
    """This process's resident set size in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def trimmed_rss_mb() -> float:
    """RSS once glibc has returned its free heap pages to the OS (malloc_trim): what stays is in use."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
    return rss_mb()


def run_client(url: str, seconds: float, connections: int, ts: int, first_uid: int,
               rss_samples: list[float] | None = None, strings: bool = False) -> dict[str, Any]:
    """Run the client process while this process's greenlets keep serving; sample RSS every second."""
    import gevent
    import gevent.subprocess
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    proc = gevent.subprocess.Popen([sys.executable, __file__, "--client", host, port, str(seconds),
                                    str(connections), str(ts), str(first_uid), str(int(strings))],
                                   stdout=gevent.subprocess.PIPE)
    while proc.poll() is None:
        if rss_samples is not None:
            rss_samples.append(rss_mb())
        gevent.sleep(1.0 if rss_samples is not None else 0.2)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"the load client failed (exit {proc.returncode})")
    return json.loads(out)


def caught_up(spout: Any, bolt: Any, timeout: float = 120) -> None:
    """Wait until every accepted event was emitted, reached loginhour and was stored by a flush."""
    import gevent
    deadline = time.monotonic() + timeout

    def accepted() -> int:
        return sum(spout.intake.accepted.values())
    while time.monotonic() < deadline and (sum(spout.counters.emitted.values()) < accepted() or
                                           bolt is not None and bolt.counters.received.get("gamelog.login_logcount", 0)
                                           < sum(spout.counters.emitted.values())):
        gevent.sleep(0.05)
    if bolt is None:
        return
    flushes = bolt.counters.flushes
    while bolt.counters.flushes < flushes + 2 and time.monotonic() < deadline:
        gevent.sleep(0.05)  # what was received is stored by the next flush


def server_main(args: argparse.Namespace) -> int:
    import gevent
    from analytics.config import load_settings
    from analytics.store import open_store
    from analytics.runners import LocalRunner
    from analytics.topology import ComponentSpec, Topology

    tmp = Path(tempfile.mkdtemp(prefix="bench_http_"))
    report: dict[str, Any] = {"runs": []}
    try:
        settings = load_settings(env={}, data_dir=str(tmp / "data"))
        settings.extra["http"] = {"port": 0, "queue_size": 20000}
        store = open_store(f"sqlite:///{tmp / 'stats.db'}")
        store.setup()
        specs = [ComponentSpec("http", "spouts.http_intake:HttpIntakeSpout")]
        if not args.no_bolts:
            specs += [ComponentSpec("loginhour", "bolts.login:LoginHourBolt"),
                      ComponentSpec("loginday", "bolts.login:LoginDayBolt")]
        runner = LocalRunner(Topology(specs), settings, store=store).start()
        spout, bolt = runner.components["http"], runner.components.get("loginhour")
        if not spout.ready.wait(10):
            raise RuntimeError("the intake did not start")
        ts, uid = int(time.time()) - 60, 1
        run_client(spout.url, 1, 1, ts, uid)    # warm-up: imports, first flushes
        uid += 1_000_000_000
        caught_up(spout, bolt)
        gc.collect()
        report["rss_start_mb"] = round(rss_mb(), 1)
        for c in args.connections:
            report["runs"].append(run_client(spout.url, args.seconds, c, ts, uid, strings=args.string_uids))
            uid += 1_000_000_000
            caught_up(spout, bolt)
        if args.soak:
            gc.collect()
            gevent.sleep(1)
            before, samples = rss_mb(), []
            soak = run_client(spout.url, args.soak, max(args.connections), ts, uid, samples, args.string_uids)
            caught_up(spout, bolt)
            gc.collect()
            gevent.sleep(2)
            after = rss_mb()
            report["soak"] = {**soak, "rss_before_mb": round(before, 1),
                              "rss_peak_mb": round(max(samples + [before]), 1), "rss_after_mb": round(after, 1),
                              "rss_trimmed_mb": round(trimmed_rss_mb(), 1)}
        accepted = sum(spout.intake.accepted.values())
        reached = bolt.counters.received.get("gamelog.login_logcount", 0) if bolt else None
        stored = sum(d["count"] for d in store.find("loginhour")) if bolt else None
        report.update(accepted=accepted, reached=reached, stored=stored)
        runner.stop()
        store.close()
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print("connections  requests/s   p50 ms   p99 ms  requests  non-2xx  reconnects  failures")
    for r in report["runs"] + ([report["soak"]] if "soak" in report else []):
        print(f"{r['connections']:>11}  {r['rps']:>10.0f}  {r['p50_ms']:>7.2f}  {r['p99_ms']:>7.2f}  "
              f"{r['requests']:>8}  {r['errors']:>7}  {r['reconnects']:>10}  {r['failures']:>8}")
    if "soak" in report:
        s = report["soak"]
        print(f"soak {s['seconds']:.0f} s on {s['connections']} connections: RSS at the start {report['rss_start_mb']} MB, "
              f"before the soak {s['rss_before_mb']} MB, peak {s['rss_peak_mb']} MB, after {s['rss_after_mb']} MB, "
              f"after malloc_trim {s['rss_trimmed_mb']} MB")
    if args.no_bolts:
        print(f"accepted {report['accepted']} (no bolts: published to the broker, not stored)")
        return 0
    print(f"accepted {report['accepted']}  reached the bolts {report['reached']}  "
          f"distinct users stored (loginhour) {report['stored']}")
    return 0 if report["accepted"] == report["stored"] else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        host, port, seconds, connections, ts, first_uid, strings = argv[1:8]
        print(json.dumps(client_main(host, int(port), float(seconds), int(connections), int(ts), int(first_uid),
                                     strings == "1")))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10, help="seconds of load per connection count (default 10)")
    ap.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64],
                    help="comma-separated connection counts (default 1,64)")
    ap.add_argument("--soak", type=float, default=60,
                    help="seconds of load on the largest count with RSS before/after (default 60; 0: none)")
    ap.add_argument("--string-uids", action="store_true",
                    help="string uids (u123): the store's uid dictionary (and its cache) grows with them")
    ap.add_argument("--no-bolts", action="store_true",
                    help="the intake alone (events go to the broker, nobody stores them): the HTTP layer's own "
                         "figures, without the bolts' store flushes sharing this process's loop")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    return server_main(ap.parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
