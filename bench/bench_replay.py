"""`analytics replay` of a login log into the embedded store, against a bare Python loop.

Target (issue 2): replay end to end, start-up included, at no less than half the
speed of a loop that parses the same lines with orjson and keeps sets per hour
and day. Prints lines/s of both, their ratio and the replay's peak memory.

    .venv/bin/python bench/bench_replay.py [--lines 400000] [--mode inproc|tcp] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson


def make_log(path: Path, lines: int, users: int = 50_000, days: int = 3, seed: int = 7) -> None:
    rnd = random.Random(seed)
    start = 1420646400  # 2015-01-08 00:00 +08:00
    with open(path, "wb") as fh:
        span = days * 86400
        for i in range(lines):
            user = rnd.randrange(users)  # a player belongs to one server: area and platform follow the user
            # Disk logs are written as events arrive: in time order, give or take a few seconds.
            ts = start + i * span // lines + rnd.randrange(-5, 6)
            rec = {"op": {"code": "login_logcount", "id": 1003}, "area": f"5491{user % 4:020d}", "ts": ts,
                   "data": {"corpid": 2001 + user % 2, "type": "signin", "server_name": "server1009",
                            "opno": 1003, "opname": "login_logcount", "acct": str(3_000_000_000 + user)}}
            fh.write(orjson.dumps(rec) + b"\n")


def bare_loop(path: Path) -> float:
    """The baseline: parse each line and keep distinct users per (area, plat, hour) and (area, plat, day)."""
    t0 = time.perf_counter()
    hours: dict[tuple, set] = {}
    days: dict[tuple, set] = {}
    with open(path, "rb") as fh:
        for line in fh:
            r = orjson.loads(line)
            ts = r["ts"]
            d = r["data"]
            key = (r["area"], str(d["corpid"]))
            hours.setdefault(key + (ts - ts % 3600,), set()).add(d["acct"])
            days.setdefault(key + ((ts + 28800) // 86400,), set()).add(d["acct"])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=400_000)
    ap.add_argument("--mode", default="inproc", choices=["inproc", "tcp"])
    ap.add_argument("--workers", type=int, default=0, help="tcp mode: worker processes (0: one per component)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    log = work / f"gamelog_login_{args.lines}.txt"
    make_log(log, args.lines)
    base = min(bare_loop(log) for _ in range(2))
    env = {**os.environ, "ANALYTICS_STORE": f"sqlite:///{work}/bench.db"}
    cmd = [sys.executable, "-m", "analytics.cli", "replay", "--game", "dl", "--no-progress", "--json",
           "--mode", args.mode, "--workers", str(args.workers), str(log)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = orjson.loads(proc.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"lines                 {args.lines}")
    print(f"bare orjson loop      {args.lines / base:,.0f} lines/s ({base:.2f}s)")
    layout = args.mode + (f", {args.workers} workers" if args.mode == "tcp" and args.workers else "")
    print(f"analytics replay      {args.lines / took:,.0f} lines/s ({took:.2f}s end to end, {layout})")
    print(f"ratio                 {base / took:.2f} of the bare loop (target >= 0.50)")
    print(f"accepted              {report['totals']['accepted']}, problems {report['problems']}")
    print(f"peak memory (replay)  {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
