"""Shared helpers of the drills (tests/integration/test_fault_drill.py, test_cluster_drill.py).

A drill writes a configuration under a temporary root with tcp endpoints on free ports, runs
the topology with `analytics start`, feeds the sample input into the files the live spouts
follow, disturbs it, waits for completion (`wait_complete`), replays the disk logs the way
docs/operations.md tells an operator (`replay_all`) and compares every collection with an
undisturbed plain replay of the same input (`undisturbed`, `dump_store`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from analytics.processes import free_port

__all__ = ["REPO", "GAME", "SPOUTS", "write_config", "cli", "ok", "pid_of", "count", "dump_store", "sample",
           "replay_all", "feed", "wait_complete", "undisturbed"]

REPO = Path(__file__).resolve().parents[2]
GAME = "dl"
SPOUTS = ("gamelog", "payment", "syncuser")


def write_config(path: Path, root: Path, *, sources: dict | None = None, extra: str = "",
                 analytics: str = "") -> Path:
    """A configuration whose every path lives under `root`, with tcp endpoints on free ports.

    `analytics` is appended to the [analytics] table (e.g. etcd, cluster, partitions)."""
    lines = [
        "[analytics]",
        f'store = "sqlite:///{root}/data/analytics.db"',
        f'data_dir = "{root}/data"',
        f'run_dir = "{root}/run"',
        *([analytics.strip()] if analytics.strip() else []),
        "[broker]",
        f'receiver = "tcp://127.0.0.1:{free_port()}"',
        f'sender = "tcp://127.0.0.1:{free_port()}"',
        f"[games.{GAME}]",
        'tz = "Asia/Shanghai"',
    ]
    for name, opts in (sources or {}).items():
        lines.append(f"[sources.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in opts.items()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "analytics.cli", "--config", str(config), *args],
                          cwd=config.parent, capture_output=True, text=True, timeout=timeout, env=env)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def pid_of(root: Path, name: str) -> int:
    return int((root / "run" / f"{name}.pid").read_text())


def count(path: Path, text: str) -> int:
    try:
        return path.read_text(errors="replace").count(text)
    except FileNotFoundError:
        return 0


def dump_store(config: Path) -> dict[str, list[str]]:
    from analytics.config import load_settings
    from analytics.schema import all_collections
    from analytics.store import open_store
    settings = load_settings(config, env={})
    with open_store(settings.store) as store:
        return {c: sorted(json.dumps(d, sort_keys=True, default=str) for d in store.find(c)
                          if not (c == "userlevel" and d.get("count") == 0))  # zero = absent (docs/collections.md)
                for c in sorted(all_collections())}


def sample(out: Path, users: int, days: int = 2, areas: int = 1) -> dict[str, list[str]]:
    """Input lines per source (analytics.sample: every op code, duplicates, malformed lines)."""
    from analytics.sample import generate
    summary = generate(out, seed=11, games={GAME: "Asia/Shanghai"}, days=days, users=users, areas=areas)
    by_source: dict[str, list[str]] = {}
    for name, path in summary.files.items():
        by_source[name.split("_")[0]] = Path(path).read_text().splitlines(keepends=True)
    assert set(by_source) == set(SPOUTS), summary.files
    return by_source


def replay_all(config: Path, files: list[str]) -> None:
    """One replay of every source (the kind comes from each file's name, as the disk logs are named)."""
    result = cli(config, "replay", "--game", GAME, "--no-progress", "--timeout", "120", *files)
    ok(result)
    print(result.stderr.strip())


def feed(indir: Path, inputs: dict[str, list[str]], start: float, end: float) -> None:
    """Append the slice [start, end) (fractions of each source's lines) to the followed files."""
    for source, lines in inputs.items():
        part = lines[int(len(lines) * start): int(len(lines) * end)]
        with open(indir / f"{source}_feed.txt", "a") as fh:
            fh.writelines(part)


def _local_rows(config: Path) -> list[list[str]]:
    """The pid-file view (`status --local`): [name, role, pid, alive, ...] per process."""
    return [ln.split() for ln in cli(config, "status", "--local").stdout.splitlines()[1:-1]]


def wait_complete(config: Path, live: Path, indir: Path, *, drain_timeout: float = 60) -> list[str]:
    """Completion: every input byte read by the spouts and every running bolt drained.

    Once the spouts' disk logs stop growing, stop the spouts (SIGTERM: they save their offsets
    and send end-of-stream barriers). Every input byte must have been read (else start them
    again and repeat); then every bolt drains (flushes everything the barriers say was sent)
    and logs "drained". Returns the bolts that drained (the running ones)."""
    sizes = {s: (indir / f"{s}_feed.txt").stat().st_size for s in SPOUTS}
    offsets: dict[str, int] = {}
    for _attempt in range(5):
        previous, stable_since = None, time.monotonic()
        while time.monotonic() - stable_since < 2.0:
            now = sorted((p.name, p.stat().st_size) for p in (live / "data").glob("*_*.txt"))
            if now != previous:
                previous, stable_since = now, time.monotonic()
            time.sleep(0.2)
        rows = [r for r in _local_rows(config) if r[3] == "yes"]
        bolts = [r[0] for r in rows if r[1] == "bolt"]
        spouts = [r[0] for r in rows if r[1] == "spout"]  # also the HTTP intake: its barriers count too
        drained_before = {b: count(live / "run" / f"{b}.log", " drained: ") for b in bolts}
        ok(cli(config, "stop", *spouts))
        offsets = {}
        for s in SPOUTS:
            state = json.loads((live / "data" / "spoolstate" / f"{s}.json").read_text())
            offsets[s] = sum(f["offset"] for f in state["files"].values())
        if offsets == sizes:
            break
        ok(cli(config, "start", *spouts))  # not everything read yet: let them go on
    else:
        raise AssertionError(f"spouts did not read all input: offsets {offsets}, sizes {sizes}")
    deadline = time.monotonic() + drain_timeout
    pending = bolts
    while time.monotonic() < deadline:
        pending = [b for b in bolts if count(live / "run" / f"{b}.log", " drained: ") <= drained_before[b]]
        if not pending:
            break
        time.sleep(0.3)
    assert not pending, f"bolts not drained: {pending}"
    return bolts


def undisturbed(base: Path, inputs: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every collection after a plain replay of the same input into a fresh store under `base`."""
    (base / "in").mkdir(parents=True)
    for s, lines in inputs.items():
        (base / "in" / f"{s}_feed.txt").write_text("".join(lines))
    base_cfg = write_config(base / "analytics.toml", base)
    replay_all(base_cfg, [str(base / "in" / f"{s}_feed.txt") for s in SPOUTS])
    return dump_store(base_cfg)
