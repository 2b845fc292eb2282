"""Exactly once in live operation (issue 19): kill -9 at seeded random moments, restart alone,
and every figure comes back exact, with no replay.

Load: a gamelog file followed at 800 lines/s (logins and yuanbao changes) and 4 HTTP clients
posting batches of events, each counted once answered 200 (tests/support/live_drill.py).
The figures of loginhour, loginday and coinday, and the HTTP events answered 200, are
checked against a brute-force count of everything written and acknowledged.

* one process (`analytics run`): the whole run is killed -9 three times and started again;
* tcp (one process per component, ProcessRunner): the loginday bolt process and the broker
  are killed -9 in turn and started again while the rest runs on.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analytics.processes import free_port
from tests.support.drill import REPO, write_config
from tests.support.live_drill import GAME, Feed, compare, kill_schedule, stored, truth

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPONENTS = ["gamelog", "http", "loginhour", "loginday", "coinday"]
SEED = int(os.environ.get("ANALYTICS_DRILL_SEED", "19"))
#: How long the load runs (seconds); kills happen inside it.
LOAD_SECONDS = 16.0
#: Checkpoint cadence and timeout of the drill's spouts (fast, so a short drill sees many).
CHECKPOINTS = {"checkpoint_seconds": 0.5, "checkpoint_timeout": 8}


def _config(root: Path, http_port: int) -> Path:
    (root / "in").mkdir(parents=True)
    (root / "in" / "game.log").touch()
    sources = {"gamelog": {"files": [str(root / "in" / "game.log")], "game": GAME, **CHECKPOINTS},
               "http": dict(CHECKPOINTS)}
    return write_config(root / "analytics.toml", root, sources=sources,
                        extra=f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n')


def _converge(store_url: str, want: dict, timeout: float) -> tuple[float, dict]:
    """Seconds until the store holds exactly `want` (or the last comparison after `timeout`)."""
    start = time.monotonic()
    while True:
        diff = compare(want, stored(store_url))
        if os.environ.get("ANALYTICS_DRILL_VERBOSE"):
            print(f"{time.monotonic() - start:5.1f}s {diff}")
        if not any(diff.values()) or time.monotonic() - start > timeout:
            return time.monotonic() - start, diff
        time.sleep(0.25)


def _drive(root: Path, http_port: int, kill_at: list[float], kill: callable) -> tuple[Feed, float]:
    """Run the load; at each moment of `kill_at` call kill(i). Returns the feed and when the load ended."""
    feed = Feed(root / "in" / "game.log", lambda: f"http://127.0.0.1:{http_port}/api/v1/event/save",
                seed=SEED, seconds=LOAD_SECONDS)
    stop = threading.Event()
    threads = [threading.Thread(target=feed.write_file, args=(stop,), daemon=True)]
    threads += [threading.Thread(target=feed.post, args=(c, stop), daemon=True) for c in range(feed.clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    try:
        for i, at in enumerate(kill_at):
            time.sleep(max(0.0, start + at - time.monotonic()))
            kill(i)
        for t in threads:
            t.join(LOAD_SECONDS + 60)
            assert not t.is_alive(), "the load did not finish"
    finally:
        stop.set()
    return feed, time.monotonic()


def _differences(want: dict, got: dict) -> list:
    return [(c, k, v, got[c].get(k)) for c in want for k, v in sorted(want[c].items()) if got[c].get(k) != v][:6]


def _report(name: str, feed: Feed, kills: int, diff: dict, recovery: float) -> None:
    print(f"\n{name}: {len(feed.written)} lines followed, {feed.posted} HTTP events answered 200 "
          f"({feed.retries} client retries), {kills} kill -9, lost {diff['lost']}, double {diff['double']}, "
          f"documents missing/extra/different {diff['missing']}/{diff['extra']}/{diff['different']}, "
          f"exact {recovery:.1f} s after the last restart (under load until the end)")


@pytest.mark.timeout(170)
def test_kill_9_of_the_whole_run_then_a_restart_alone_is_exact(tmp_path):
    http_port = free_port()
    cfg = _config(tmp_path, http_port)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "run.log", "ab")

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "analytics.cli", "--config", str(cfg), "--log-level", "INFO", "run",
                                 "--only", ",".join(COMPONENTS)], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    procs = [start()]
    rng = random.Random(SEED)

    restarts: list[float] = []

    def kill(i: int) -> None:
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(10)
        time.sleep(rng.uniform(0.0, 0.5))
        restarts.append(time.monotonic())
        procs.append(start())

    moments = kill_schedule(SEED, LOAD_SECONDS, 4)
    try:
        feed, ended = _drive(tmp_path, http_port, moments, kill)
        want = truth(feed.written + feed.acked)
        settle, diff = _converge(f"sqlite:///{tmp_path}/data/analytics.db", want, timeout=60)
        _report("one process", feed, len(moments), diff, ended + settle - restarts[-1])
        assert not any(diff.values()), (diff, _differences(want, stored(f"sqlite:///{tmp_path}/data/analytics.db")))
        assert len(feed.acked) == feed.posted > 0 and len(procs) == 5
    finally:
        procs[-1].send_signal(signal.SIGTERM)
        code = procs[-1].wait(60)
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    # After a clean stop nothing changes: what was stored is still exact.
    assert not any(compare(want, stored(f"sqlite:///{tmp_path}/data/analytics.db")).values())


@pytest.mark.timeout(170)
def test_kill_9_of_a_bolt_process_and_of_the_broker_in_tcp_mode_is_exact(tmp_path):
    from analytics.config import load_settings
    from analytics.processes import ProcessRunner
    from analytics.topology import default_topology

    http_port = free_port()
    cfg = _config(tmp_path, http_port)
    settings = load_settings(cfg, env={})
    runner = ProcessRunner(default_topology(settings, only=COMPONENTS), settings, log_dir=str(tmp_path),
                           coordinate=False)
    victims = ["loginday", "broker", "loginday", "broker", "loginday"]
    rng = random.Random(SEED + 1)

    restarts: list[float] = []

    def kill(i: int) -> None:
        name = victims[i]
        runner.procs[name].send_signal(signal.SIGKILL)
        runner.procs[name].wait(10)
        time.sleep(rng.uniform(0.0, 0.5))
        restarts.append(time.monotonic())
        runner.restart(name)

    cwd = os.getcwd()
    os.chdir(REPO)   # the children import the package from here
    try:
        runner.start()
        moments = kill_schedule(SEED + 1, LOAD_SECONDS, len(victims))
        feed, ended = _drive(tmp_path, http_port, moments, kill)
        want = truth(feed.written + feed.acked)
        settle, diff = _converge(settings.store, want, timeout=60)
        _report("tcp, one process per component", feed, len(victims), diff, ended + settle - restarts[-1])
        assert not any(diff.values()), (diff, _differences(want, stored(settings.store)))
        dead = {n: p.returncode for n, p in runner.procs.items() if p.poll() is not None}
        assert not dead, dead
    finally:
        codes = runner.stop(timeout=30)
        os.chdir(cwd)
    assert all(c == 0 for c in codes.values()), codes
