"""Store benchmark: upserts/s, flush latency, SQLite bytes per million rows.

    .venv/bin/python bench/bench_store.py            # about 30-60 s on 2 cores

A "flush" is what one busy bolt writes at once: 5,000 member adds over 50
period keys (each with count_into), 200 $inc upserts and 5,000 seen marks.
mongomock is an in-memory stand-in, NOT MongoDB, without real indexes (each
write scans its collection), so it runs 1/25 of that flush: its figures say
nothing about a MongoDB server, they only show that the code path runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics.store import Batch, MemberKey, Store  # noqa: E402
from analytics.store.sqlite import SQLiteStore  # noqa: E402

T0 = 1420646400


def make_flush(n: int, members: int = 5000, keys: int = 50, upserts: int = 200) -> Batch:
    """Flush number n: fresh users and record ids, the same period keys every time."""
    b = Batch()
    per_key = members // keys
    for k in range(keys):
        mk = MemberKey("login_hour", "dl", str(k % 10), str(k // 10), T0 + 3600 * (k % 5))
        doc_key = {"game": mk.game, "area": mk.area, "plat": mk.plat, "ts": mk.ts}
        b.add_members(mk, (f"u{n}_{k}_{i}" for i in range(per_key)), count_into=("login_hour", doc_key, "users"))
    for u in range(upserts):
        b.upsert("login_hour", {"game": "dl", "area": str(u % 10), "plat": str(u // 10), "ts": T0},
                 inc={"count": 25})
    b.mark_seen("login", (f"r{n}_{i}" for i in range(members)))
    return b


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def bench(label: str, opener: Callable[[], Store], flushes: int, upsert_batches: int, *,
          members: int = 5000, upserts: int = 200, upsert_batch: int = 2000) -> None:
    store = opener()
    store.setup()
    lat = []
    for n in range(flushes):
        b = make_flush(n, members=members, upserts=upserts)
        t = time.perf_counter()
        store.apply(b)
        lat.append((time.perf_counter() - t) * 1000)
    only = []
    for n in range(flushes, flushes + max(3, flushes // 2)):
        b = Batch(members=make_flush(n, members=members, upserts=0).members)
        t = time.perf_counter()
        store.apply(b)
        only.append((time.perf_counter() - t) * 1000)
    half = members // 2
    ids = [f"r0_{i}" for i in range(half)] + [f"new{i}" for i in range(half)]
    t = time.perf_counter()
    fresh = store.unseen("login", ids)
    unseen_ms = (time.perf_counter() - t) * 1000
    assert len(fresh) == half, len(fresh)
    # Upserts alone: batches of $inc/$max upserts over the same documents.
    t = time.perf_counter()
    for n in range(upsert_batches):
        b = Batch()
        for u in range(upsert_batch):
            b.upsert("pay_day", {"game": "dl", "area": str(u % 40), "plat": str(u // 40), "ts": T0},
                     inc={"count": 1, "amount": 6.0}, max={"last": n})
        store.apply(b)
    ups = upsert_batches * upsert_batch / (time.perf_counter() - t)
    store.close()
    print(f"{label}")
    print(f"  flush ({members:,} member adds / 50 keys + {upserts} upserts + {members:,} seen), {flushes} flushes: "
          f"p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms")
    print(f"  member adds only ({members:,} over 50 keys, with count_into), {len(only)} applies: "
          f"p50 {statistics.median(only):.1f} ms, p99 {pct(only, 99):.1f} ms")
    print(f"  unseen() of {members:,} ids: {unseen_ms:.1f} ms")
    print(f"  upserts: {ups:,.0f}/s ({upsert_batches} batches of {upsert_batch:,})")


def sqlite_size(tmp: Path, rows: int) -> None:
    """Bytes per million rows, extrapolated linearly from `rows` rows."""
    for what in ("members", "seen"):
        path = tmp / f"size_{what}.db"
        store = SQLiteStore(path)
        store.setup()
        for start in range(0, rows, 20000):
            b = Batch()
            if what == "members":
                for k in range(20):          # 20 period keys per batch, 1,000 users each
                    mk = MemberKey("login_day", "dl", str(k % 10), "7", T0 + 86400 * (start // 20000))
                    b.add_members(mk, (f"{10_000_000 + start + k * 1000 + i}" for i in range(1000)))
            else:
                b.mark_seen("login", (f"gamelog:{start + i:012d}" for i in range(20000)))
            store.apply(b)
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        size = os.path.getsize(path)
        print(f"  sqlite {what}: {size / rows * 1e6 / 2**20:.0f} MiB per million rows "
              f"(extrapolated from {rows:,} rows, {size / 2**20:.1f} MiB; ids like "
              f"{'8-digit user ids' if what == 'members' else 'gamelog:000000123456'})")


def main() -> None:
    """Run both backends and the size estimate; prints the load average, since the machine is shared."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flushes", type=int, default=40)
    ap.add_argument("--size-rows", type=int, default=200_000)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings scale with it)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench("sqlite (file, WAL, synchronous=NORMAL)", lambda: SQLiteStore(tmp / "bench.db"), args.flushes, 10)
        try:
            import mongomock

            from analytics.store.mongo import MongoStore
        except ImportError:
            print("mongomock not installed: skipped")
        else:
            # mongomock has no real indexes: every write scans its collection (lookup,
            # unique check, TTL expiry), so one realistic flush takes minutes (measured:
            # a 500-add flush ~20 s). 1/25 of it, to show the path runs.
            bench("mongomock (in-memory stand-in, not MongoDB; 1/25-size flushes)",
                  lambda: MongoStore(mongomock.MongoClient(), "bench"), 3, 1,
                  members=200, upserts=20, upsert_batch=200)
        print("SQLite database size:")
        sqlite_size(tmp, args.size_rows)


if __name__ == "__main__":
    main()
