"""The realistic mix of issue 23, end to end with the CLI, against a bare loop run in the same invocation.

The mix: logins, sign-ups, role creations and payment snapshots of 2 games
(Asia/Shanghai and New York), 3 servers each, 40 days (about 75,000 records by
default), from `analytics.sample.generate` with its uids turned into numeric
account ids around 3e9 (so that a day's set spans the 2**26-id part boundaries at
2,952,790,016 and 3,019,898,880, as real numeric ids do). Every statistic and timer
of the default topology runs.

Printed, each as records/s and as a ratio to the bare loop (orjson + a dict of sets
per record kind, server, hour and day, no I/O) on the same files:

* `analytics replay` (one CLI process per game, into one fresh store; wall clock of
  both, start-up included), with the store operations per 1,000 records;
* optionally (`--profile DIR`) the same replay again under py-spy, written as a
  speedscope/flamegraph file and a top-30 table of self time.

    .venv/bin/python bench/bench_mix.py [--users 700] [--days 40] [--store-url URL] [--profile DIR]
                                        [--baseline /path/to/a/checkout/of/main]

The machine is shared: compare ratios of one invocation, not records/s across runs.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
GAMES = {"dl": "Asia/Shanghai", "wsdx": "America/New_York"}
#: The gamelog op codes of the mix (the lead's profile of issue 23: no coin, shop, dungeon or task records).
MIX_OPS = (b'"signup_logcount"', b'"createrole_logcount"', b'"login_logcount"')
#: Numeric ids: user i of a game is BASE + i * STEP (700 users span 2.94e9 .. 3.045e9).
BASE, STEP = 2_940_000_000, 149_993
_UID = re.compile(rb'"(dl|ws)(\d{5})"')


def _numeric(m: re.Match[bytes]) -> bytes:
    return b'"%d"' % (BASE + int(m.group(2)) * STEP + (0 if m.group(1) == b"dl" else 7))


def make_mix(work: Path, users: int, days: int, areas: int = 3, seed: int = 23) -> dict[str, list[Path]]:
    """Write the mix's files into `work`; returns {game: [files of its CLI replay]} (payments with the first)."""
    from analytics.sample import generate
    raw = work / "raw"
    generate(raw, seed=seed, games=GAMES, days=days, users=users, areas=areas, tag="mix", malformed=False)
    out: dict[str, list[Path]] = {}
    for game in GAMES:
        src = raw / f"gamelog_{game}_mix.txt"
        dst = work / src.name
        with open(src, "rb") as fh:
            dst.write_bytes(b"".join(_UID.sub(_numeric, line) for line in fh if any(op in line for op in MIX_OPS)))
        out[game] = [dst]
    pay = work / "payment_mix.txt"
    pay.write_bytes(_UID.sub(_numeric, (raw / "payment_mix.txt").read_bytes()))
    out[next(iter(GAMES))].append(pay)
    shutil.rmtree(raw)
    (work / "mix.toml").write_text("".join(f'[games.{g}]\ntz = "{tz}"\n' for g, tz in GAMES.items()))
    return out


def count_lines(files: dict[str, list[Path]]) -> int:
    return sum(sum(1 for _ in open(f, "rb")) for fs in files.values() for f in fs)


def bare_loop(files: dict[str, list[Path]]) -> float:
    """The baseline: parse every line, keep distinct users per (kind, server, hour) and (kind, server, day)."""
    t0 = time.perf_counter()
    hours: dict[tuple, set] = {}
    days: dict[tuple, set] = {}
    for game, paths in files.items():
        for path in paths:
            with open(path, "rb") as fh:
                for line in fh:
                    r = orjson.loads(line)
                    ts = r["ts"]
                    if "users" in r:
                        key = (r["game"], r["area"], r["plat"], "pay")
                        days.setdefault(key + ((ts + 28800) // 86400,), set()).update(r["users"])
                        continue
                    d = r["data"]
                    key = (game, r["area"], str(d["corpid"]), r["op"]["code"])
                    hours.setdefault(key + (ts - ts % 3600,), set()).add(d["acct"])
                    days.setdefault(key + ((ts + 28800) // 86400,), set()).add(d["acct"])
    return time.perf_counter() - t0


def replay(files: dict[str, list[Path]], work: Path, store: str, prefix: list[str] | None = None,
           code: Path = ROOT) -> dict[str, Any]:
    """One `analytics replay --json` per game into `store`; wall seconds of all, and their summed reports.

    `code`: the checkout whose `analytics` runs (another worktree: a before/after in one invocation).
    """
    took = 0.0
    totals: dict[str, int] = {}
    ops: dict[str, int] = {}
    for game, paths in files.items():
        cmd = [*(prefix or []), sys.executable, "-m", "analytics.cli", "--config", str(work / "mix.toml"), "replay",
               "--game", game, "--no-progress", "--json", "--store", store, *map(str, paths)]
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(code)}
        proc = subprocess.run(cmd, cwd=code, capture_output=True, text=True, env=env)
        took += time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"replay failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        report = orjson.loads(next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")))
        if report["problems"]:
            sys.exit(f"replay of {game}: problems {report['problems']}")
        for k, v in report["totals"].items():
            if isinstance(v, int):
                totals[k] = totals.get(k, 0) + v
        for k, v in (report.get("store_ops") or {}).items():
            if isinstance(v, int):
                ops[k] = ops.get(k, 0) + v
    return {"seconds": took, "totals": totals, "ops": ops}


def profile(files: dict[str, list[Path]], work: Path, out_dir: Path) -> None:
    """The same replay (first game and payments) under py-spy: a speedscope file and its top self times."""
    out_dir.mkdir(parents=True, exist_ok=True)
    game = next(iter(files))
    raw = out_dir / f"mix_{game}.txt"
    replay({game: files[game]}, work, f"sqlite:///{work}/profile.db",
           prefix=[str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw", "--rate", "200", "-o", str(raw), "--"])
    self_time: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        total += int(n)
        self_time[frames[-1]] = self_time.get(frames[-1], 0) + int(n)
    print(f"profile of the {game} replay ({total} samples at 200/s): {raw}")
    for frame, n in sorted(self_time.items(), key=lambda kv: -kv[1])[:30]:
        print(f"  {100 * n / total:5.1f} %  {frame}")


def _ops(run: dict[str, Any], n: int) -> str:
    ops = run["ops"]
    if not ops:
        return ""
    return f"per 1,000 records: {1000 * ops.get('reads', 0) / n:.0f} reads, {1000 * ops.get('writes', 0) / n:.0f} writes"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=700, help="users per game (700: about 75,000 records)")
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--store-url", help="store of the replay (default: a fresh SQLite file); a mongodb:// URL "
                                        "should name a fresh database")
    ap.add_argument("--profile", metavar="DIR", help="also profile one game's replay with py-spy into DIR")
    ap.add_argument("--keep", action="store_true", help="keep the generated files (their directory is printed)")
    ap.add_argument("--runs", type=int, default=3, help="replays of each checkout, interleaved; the fastest is kept")
    ap.add_argument("--baseline", metavar="CHECKOUT", type=Path,
                    help="also replay with the analytics of another checkout (e.g. a worktree of main), "
                         "run before this one, into a store of its own")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mix-"))
    files = make_mix(work, args.users, args.days)
    n = count_lines(files)
    base = min(bare_loop(files) for _ in range(3))
    if args.store_url and (args.baseline or args.runs > 1):
        ap.error("--baseline and --runs > 1 need a fresh store per run: leave out --store-url")
    before: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    for i in range(args.runs):     # interleaved, the fastest of each kept: the machine is shared
        if args.baseline:
            b = replay(files, work, f"sqlite:///{work}/baseline{i}.db", code=args.baseline)
            before = b if before is None or b["seconds"] < before["seconds"] else before
        r = replay(files, work, args.store_url or f"sqlite:///{work}/mix{i}.db")
        run = r if run is None or r["seconds"] < run["seconds"] else run
        base = min(base, bare_loop(files))
    assert run is not None
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench_mix {when}: {n:,} records (logins, sign-ups, roles, payment snapshots), 2 games, "
          f"6 servers, {args.days} days, {args.users} users per game; store "
          f"{args.store_url or 'sqlite (fresh file)'}; {os.cpu_count()} cores (shared machine: the fastest of "
          f"{args.runs} interleaved runs)")
    print(f"{'run':46} {'records/s':>10} {'vs bare':>8}")
    print(f"{'bare loop (orjson + dict of sets, same files)':46} {n / base:>10,.0f} {1:>8.2f}")
    rate = n / run["seconds"]
    if before is not None:
        r0 = n / before["seconds"]
        label = f"baseline {args.baseline.name}: analytics replay"
        print(f"{label[:46]:46} {r0:>10,.0f} {r0 * base / n:>8.3f}  {_ops(before, n)}")
    print(f"{'this checkout: analytics replay (one CLI a game)':46} {rate:>10,.0f} {rate * base / n:>8.3f}  {_ops(run, n)}")
    if before is not None:
        print(f"this checkout / baseline: {rate / r0:.2f}x")
    print(f"target (issue 23): mix / bare loop >= 0.10: {rate * base / n:.3f} "
          f"{'ok' if rate * base / n >= 0.10 else 'MISSED'}")
    if args.profile:
        profile(files, work, Path(args.profile))
    if args.keep:
        print(f"files kept in {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
