"""End-to-end records/s with every bolt of the default topology running.

The data set is the reference test's (analytics.sample.generate: three games in two
zones, three areas x two platforms each, 40 days, duplicates, out-of-order and
malformed lines): all gamelog files (one spout per game), payment and syncuser,
replayed into a fresh SQLite store until every bolt has drained (timer bolts
included). Each mode runs in a child process of its own, so peak memory is that
run's: inproc (one process, greenlets) and tcp (settings.mode = "tcp": broker and
every component in processes of their own, or with --workers N grouped into N worker
processes by stage; peak = the largest process).

    .venv/bin/python bench/bench_pipeline.py [--users 3700] [--activity 0.055] [--mode inproc tcp] [--workers N]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZONES = {"dl": "Asia/Shanghai", "wsdx": "America/New_York", "sg": "Asia/Shanghai"}


def child(data: Path, mode: str, store: str, workers: int) -> None:
    """Replay everything in `data` once; print a JSON line with the figures."""
    from analytics.app import replay, source_spec
    from analytics.config import GameSettings, load_settings
    settings = load_settings(env={}, data_dir=str(data / f"run-{mode}"), store=store)
    settings.games = {g: GameSettings(g, tz) for g, tz in ZONES.items()}
    settings.mode = mode
    settings.workers = workers
    specs = [dataclasses.replace(source_spec(settings, "gamelog", [str(data / f"gamelog_{g}_bench.txt")], g),
                                 name=f"replay_gamelog_{g}") for g in ZONES]
    specs += [source_spec(settings, s, [str(data / f"{s}_bench.txt")], None) for s in ("payment", "syncuser")]
    t0 = time.perf_counter()
    report = replay(settings, specs, progress=False, timeout=1800)
    took = time.perf_counter() - t0
    gamelog = sum(sum(r.get("sent", {}).values()) for n, r in report.spouts.items() if "gamelog" in n)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": took, "totals": report.totals(), "gamelog": gamelog,
                      "peak_kib": max(own, kids), "self_kib": own}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=3700, help="users per game (3 games)")
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--activity", type=float, default=0.055, help="chance a user plays on a given day")
    ap.add_argument("--mode", nargs="+", default=["inproc", "tcp"], choices=["inproc", "tcp"])
    ap.add_argument("--workers", type=int, default=0, help="tcp mode: worker processes (0: one per component)")
    ap.add_argument("--child", nargs=4, metavar=("DATA", "MODE", "STORE", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.child[2], int(args.child[3]))
        return
    from analytics.sample import generate
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    s = generate(work, seed=5, games=ZONES, days=args.days, users=args.users, areas=3, activity=args.activity,
                 start=1424390400, tag="bench")
    lines = sum(s.lines.values())
    print(f"data set: {lines:,} lines ({', '.join(f'{k} {v:,}' for k, v in s.lines.items())})")
    for mode in args.mode:
        store = f"sqlite:///{work}/bench-{mode}.db"
        proc = subprocess.run([sys.executable, __file__, "--child", str(work), mode, store, str(args.workers)], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{mode} replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        t = r["totals"]
        label = f"tcp/{args.workers}w" if mode == "tcp" and args.workers else mode
        print(f"{label:7} {t['read'] / r['seconds']:8,.0f} records/s all sources, "
              f"{r['gamelog'] / r['seconds']:8,.0f} gamelog records/s  ({r['seconds']:.1f}s; read {t['read']:,}, "
              f"rejected {t['rejected']}, duplicates dropped {t['deduplicated']:,}, errors {t['errors']})  "
              f"peak memory {r['peak_kib'] / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
