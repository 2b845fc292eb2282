"""Broker path throughput: spout -> receiver -> sender -> bolt decode, batched frames.

Target (issue 2): >= 200,000 gamelog tuples/s through receiver -> sender -> bolt
decode in the multi-process layout. Prints tuples/s for one process (inproc)
and for separate processes over tcp://127.0.0.1, per batch size.

    .venv/bin/python bench/bench_broker.py [--count 500000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics.config import load_settings  # noqa: E402
from analytics.processes import ProcessRunner  # noqa: E402
from analytics.runners import LocalRunner  # noqa: E402
from analytics.topology import ComponentSpec, Topology  # noqa: E402


def run(mode: str, count: int, batch: int) -> tuple[float, float]:
    """(tuples/s including start-up, tuples/s from the spout's first tuple to the bolt's drain)."""
    tmp = tempfile.mkdtemp(prefix="bench-broker-")
    settings = load_settings(env={}, data_dir=tmp, store=f"sqlite:///{tmp}/unused.db")
    settings.broker.batch_size = batch
    topo = Topology([ComponentSpec("benchspout", "bench.components:BenchSpout", {"count": count}),
                     ComponentSpec("decodebolt", "bench.components:DecodeBolt")])
    t0 = time.perf_counter()
    runner = (ProcessRunner(topo, settings, log_dir=tmp) if mode == "tcp" else LocalRunner(topo, settings)).start()
    try:
        report = runner.wait_drained(300)
    finally:
        runner.stop()
    took = time.perf_counter() - t0
    got = report.bolts["decodebolt"]["received"].get("gamelog.login_logcount", 0)
    assert got == count and not report.problems(topo), (got, report.problems(topo))
    steady = report.bolts["decodebolt"]["at"] - report.spouts["benchspout"]["started_at"]
    return count / took, count / steady


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1_000_000)
    args = ap.parse_args()
    os.chdir(ROOT)
    print(f"{'layout':<24}{'batch':>6}{'tuples/s':>12}{'steady':>12}   ({args.count} tuples; the first figure "
          "includes process start-up and drain)")
    for mode in ("inproc", "tcp"):
        for batch in (1, 100, 500):
            n = args.count if batch > 1 else min(args.count, 50_000)
            rate, steady = run(mode, n, batch)
            label = "one process (inproc)" if mode == "inproc" else "3 processes (tcp)"
            print(f"{label:<24}{batch:>6}{rate:>12,.0f}{steady:>12,.0f}")


if __name__ == "__main__":
    main()
