"""The login workload of bench_replay in the peers a Python user would pick, beside `analytics replay`.

One invocation, one input (bench_replay's: 400,000 time-ordered login records of
200k users on 20 servers over 30 days), one job: read the file, parse each line,
and count the distinct users per server-hour and per server-day. Each run is a
child process timed end to end (start-up included), next to the bare loop
(orjson + a dict of sets, no I/O) run in the same invocation, before and after:

* `analytics replay` into a fresh embedded (SQLite) store: every figure durable;
* Bytewax 0.21 (`bytewax.testing.run_main`, one worker) with recovery on: a
  `RecoveryConfig` on a fresh recovery directory, so every key's set of users is
  snapshotted to SQLite at each epoch (`--epoch` seconds, 10 by default: Bytewax's
  own default), the durable state a restart resumes from; FileSource in, the
  distinct sets by `fold_final`, counts out;
* DuckDB: `COUNT(DISTINCT acct)` grouped by server and hour, and by server and day,
  over `read_json` of the file (two queries, one connection; not durable: a query).

Every peer's figures are checked against the bare loop's (the number of
(server, period) keys and the sum of their distinct counts); the replay's are read
back from its store (loginhour, loginday). Bench-only dependencies (`pip install
-e .[bench]`: bytewax, duckdb); not in the package's install_requires.

    .venv/bin/python bench/bench_peers.py [--records 400000] [--epoch 10]

The machine is shared (other engineers run tests on its 2 cores): compare the
ratios of one invocation, not records/s across invocations.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_replay import bare_loop, make_logs, replay  # noqa: E402

#: UTC+8, the game's zone in bench_replay's input (no DST): day = (ts + 8 h) // 1 day.
OFFSET = 8 * 3600


# -- the peers, each run as a child process --------------------------------------------------------

def run_bytewax(path: str, recovery: str, epoch: float) -> dict[str, int]:
    """Bytewax 0.21: FileSource -> parse -> (key, uid) per hour and day -> fold_final(set) -> counts."""
    from datetime import timedelta

    import bytewax.operators as op
    from bytewax.connectors.files import FileSource
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSink, run_main

    def keys(line: str) -> list[tuple[str, str]]:
        r = orjson.loads(line)
        ts, d = r["ts"], r["data"]
        server = f"{r['area']}|{d['corpid']}"
        return [(f"h|{server}|{ts - ts % 3600}", d["acct"]), (f"d|{server}|{(ts + OFFSET) // 86400}", d["acct"])]

    def add(users: set[str], uid: str) -> set[str]:
        users.add(uid)
        return users

    flow = Dataflow("distinct_logins")
    lines = op.input("read", flow, FileSource(path))
    pairs = op.flat_map("parse", lines, keys)
    sets = op.fold_final("distinct", pairs, set, add)
    counts = op.map("count", sets, lambda kv: (kv[0], len(kv[1])))
    out: list[tuple[str, int]] = []
    op.output("out", counts, TestingSink(out))
    Path(recovery).mkdir(parents=True, exist_ok=True)
    init_db_dir(Path(recovery), 1)
    run_main(flow, epoch_interval=timedelta(seconds=epoch), recovery_config=RecoveryConfig(Path(recovery)))
    return _summary((k[0], n) for k, n in out)


def run_duckdb(path: str) -> dict[str, int]:
    """DuckDB: COUNT(DISTINCT acct) per (area, plat, hour) and per (area, plat, day) over read_json."""
    import duckdb
    con = duckdb.connect()
    con.execute(f"CREATE VIEW logins AS SELECT area, data.corpid AS plat, ts, data.acct AS acct "
                f"FROM read_json('{path}', format = 'newline_delimited')")
    hours = con.execute("SELECT count(DISTINCT acct) FROM logins GROUP BY area, plat, ts - ts % 3600").fetchall()
    days = con.execute(f"SELECT count(DISTINCT acct) FROM logins GROUP BY area, plat, (ts + {OFFSET}) // 86400"
                       ).fetchall()
    return _summary([("h", n) for (n,) in hours] + [("d", n) for (n,) in days])


def _summary(rows: Any) -> dict[str, int]:
    out = {"hour_keys": 0, "hour_users": 0, "day_keys": 0, "day_users": 0}
    for kind, n in rows:
        p = "hour" if kind.startswith("h") else "day"
        out[f"{p}_keys"] += 1
        out[f"{p}_users"] += n
    return out


def bare_summary(path: Path) -> dict[str, int]:
    """The bare loop's figures in _summary's shape (what every peer must print)."""
    hours: dict[tuple, set] = {}
    days: dict[tuple, set] = {}
    with open(path, "rb") as fh:
        for line in fh:
            r = orjson.loads(line)
            ts, d = r["ts"], r["data"]
            key = (r["area"], d["corpid"])
            hours.setdefault(key + (ts - ts % 3600,), set()).add(d["acct"])
            days.setdefault(key + ((ts + OFFSET) // 86400,), set()).add(d["acct"])
    return {"hour_keys": len(hours), "hour_users": sum(map(len, hours.values())),
            "day_keys": len(days), "day_users": sum(map(len, days.values()))}


def store_summary(url: str) -> dict[str, int]:
    """The replay's figures, read back from its store (loginhour and loginday documents)."""
    from analytics.store import open_store
    with open_store(url) as store:
        hours = [d["count"] for d in store.find("loginhour") if d.get("count")]
        days = [d["count"] for d in store.find("loginday") if d.get("count")]
    return {"hour_keys": len(hours), "hour_users": sum(hours), "day_keys": len(days), "day_users": sum(days)}


def child(kind: str, args: list[str]) -> dict[str, Any]:
    """Run one peer as `python bench_peers.py --child KIND ARGS...`: wall seconds and its summary."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", kind, *args], cwd=ROOT, capture_output=True,
                          text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"seconds": took, "summary": orjson.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        kind, rest = sys.argv[i + 1], sys.argv[i + 2:]
        got = run_bytewax(rest[0], rest[1], float(rest[2])) if kind == "bytewax" else run_duckdb(rest[0])
        print(orjson.dumps(got).decode())
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--epoch", type=float, default=10.0, help="Bytewax epoch (snapshot) interval, seconds")
    args = ap.parse_args()
    n = args.records
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    ordered = work / f"gamelog_dl_ordered_{n}.txt"
    make_logs(ordered, work / "shuffled.txt", n)
    truth = bare_summary(ordered)
    base = min(bare_loop(ordered) for _ in range(2))
    runs: dict[str, dict[str, Any]] = {}
    url = f"sqlite:///{work}/replay.db"
    runs["analytics replay (SQLite store)"] = {**replay(ordered, url, []), "summary": None}
    runs["analytics replay (SQLite store)"]["summary"] = store_summary(url)
    runs[f"Bytewax 0.21, recovery on (epoch {args.epoch:g} s)"] = child(
        "bytewax", [str(ordered), str(work / "recovery"), str(args.epoch)])
    runs["DuckDB COUNT(DISTINCT) over read_json"] = child("duckdb", [str(ordered)])
    base = min(base, min(bare_loop(ordered) for _ in range(2)))    # the machine is shared: before and after
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench_peers {when}: {n:,} login records, 200k users, 20 servers, 30 days; distinct users per "
          f"server-hour and server-day; {os.cpu_count()} cores (shared machine); each run a child process, "
          f"start-up included")
    print(f"{'run':46} {'records/s':>10} {'vs bare':>8} {'vs bytewax':>11}  figures")
    bw = next(r for k, r in runs.items() if k.startswith("Bytewax"))
    print(f"{'bare loop (orjson + dict of sets, in process)':46} {n / base:>10,.0f} {1:>8.2f} "
          f"{bw['seconds'] / base:>11.2f}  {truth}")
    for label, r in runs.items():
        ok = "exact" if r["summary"] == truth else f"DIFFERENT: {r['summary']}"
        print(f"{label:46} {n / r['seconds']:>10,.0f} {base / r['seconds']:>8.3f} "
              f"{bw['seconds'] / r['seconds']:>11.2f}  {ok}")
    ours = runs["analytics replay (SQLite store)"]
    print(f"target (issue 23): analytics replay / Bytewax with durable state >= 1.0: "
          f"{bw['seconds'] / ours['seconds']:.2f} {'ok' if bw['seconds'] >= ours['seconds'] else 'MISSED'}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
