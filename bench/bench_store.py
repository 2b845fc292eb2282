"""Store benchmark: flushes of membership bitmaps, upserts/s, bytes per million members, store memory.

    .venv/bin/python bench/bench_store.py            # about 1-2 min on 2 cores
    .venv/bin/python bench/bench_store.py --no-mongo # SQLite only

A "flush" is what one busy bolt writes at once: 5,000 member adds over 50
period keys (each with count_into), 200 $inc upserts and 5,000 seen marks. The
member sets are compressed bitmaps (docs/stores.md): a flush writes one blob
per touched period, so its cost grows with the periods, not the members. Run
with numeric user ids (their own integers) and with string ids (through the
uid_map dictionary: one row per user, once). The MongoDB backend runs on
SecantusDB (MongoDB wire protocol; not MongoDB) started by tests/mongo_server.py,
or on $ANALYTICS_TEST_MONGO_URL.

Store memory: a child process per input size feeds login-like records
(users = size / 2 over 20 servers and 30 days, flushes of 20,000 records) through
one SQLiteStore with the default 64 MiB hot-set budget and prints its peak RSS:
it should stay nearly flat as the input grows.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics.store import Batch, MemberKey, Store  # noqa: E402
from analytics.store.sqlite import SQLiteStore  # noqa: E402

T0 = 1420646400


def make_flush(n: int, members: int = 5000, keys: int = 50, upserts: int = 200, numeric: bool = True) -> Batch:
    """Flush number n: fresh users and record ids, the same period keys every time."""
    b = Batch()
    per_key = members // keys
    for k in range(keys):
        mk = MemberKey("login_hour", "dl", str(k % 10), str(k // 10), T0 + 3600 * (k % 5))
        doc_key = {"game": mk.game, "area": mk.area, "plat": mk.plat, "ts": mk.ts}
        users = (str(10_000_000 + (n * keys + k) * per_key + i) if numeric else f"u{n}_{k}_{i}"
                 for i in range(per_key))
        b.add_members(mk, users, count_into=("login_hour", doc_key, "users"))
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
    print(label)
    for numeric in (True, False):
        lat, writes = [], []
        for n in range(flushes):
            b = make_flush(n, members=members, upserts=upserts, numeric=numeric)
            before = store.op_counts["writes"]
            t = time.perf_counter()
            store.apply(b)
            lat.append((time.perf_counter() - t) * 1000)
            writes.append(store.op_counts["writes"] - before)
        only = []
        for n in range(flushes, flushes + max(3, flushes // 2)):
            b = Batch(members=make_flush(n, members=members, upserts=0, numeric=numeric).members)
            t = time.perf_counter()
            store.apply(b)
            only.append((time.perf_counter() - t) * 1000)
        before = store.op_counts["writes"]
        t = time.perf_counter()
        store.apply(Batch(members=make_flush(1, members=members, upserts=0, numeric=numeric).members))
        replay_ms, replay_writes = (time.perf_counter() - t) * 1000, store.op_counts["writes"] - before
        ids = "numeric uids" if numeric else "string uids (uid_map)"
        print(f"  {ids}: flush ({members:,} member adds / 50 keys + {upserts} upserts + {members:,} seen), "
              f"{flushes} flushes: p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
              f"{statistics.median(writes):.0f} rows written per flush")
        print(f"  {ids}: member adds only ({members:,} over 50 keys, with count_into), {len(only)} applies: "
              f"p50 {statistics.median(only):.1f} ms, p99 {pct(only, 99):.1f} ms; "
              f"the same members again: {replay_ms:.1f} ms, {replay_writes} rows written")
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
    print(f"  unseen() of {members:,} ids: {unseen_ms:.1f} ms")
    print(f"  upserts: {ups:,.0f}/s ({upsert_batches} batches of {upsert_batch:,})")


def _fill_sets(store: Store, members: int, dense: bool) -> None:
    """`members` members over 20 sets a day, 1,000 per set per batch: consecutive 8-digit ids (dense),
    or ids drawn at random from 10,000,000-99,999,999 (sparse: the worst case of a roaring array)."""
    rnd = random.Random(3)
    for start in range(0, members, 20000):
        b = Batch()
        for k in range(20):
            mk = MemberKey("login_day", "dl", str(k % 10), str(k // 10), T0 + 86400 * (start // 100000))
            ids = (10_000_000 + start + k * 1000 + i if dense else rnd.randrange(10_000_000, 100_000_000)
                   for i in range(1000))
            b.add_members(mk, map(str, ids))
        store.apply(b)


def sqlite_size(tmp: Path, rows: int) -> None:
    """Bytes per million members (bitmaps) and seen marks, extrapolated linearly from `rows`."""
    for what in ("dense members", "sparse members", "seen"):
        path = tmp / f"size_{what.replace(' ', '_')}.db"
        store = SQLiteStore(path)
        store.setup()
        if what != "seen":
            _fill_sets(store, rows, dense=what.startswith("dense"))
        else:
            for start in range(0, rows, 20000):
                b = Batch()
                b.mark_seen("login", (f"gamelog:{start + i:012d}" for i in range(20000)))
                store.apply(b)
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        size = os.path.getsize(path)
        print(f"  sqlite {what}: {size / rows * 1e6 / 2**20:.2f} MiB per million "
              f"{'rows' if what == 'seen' else 'members'} (from {rows:,}, file {size / 2**20:.2f} MiB; ids like "
              f"{'gamelog:000000123456' if what == 'seen' else '8-digit user ids'})")


def mongo_size(opener: Callable[[], Store], rows: int) -> None:
    for dense in (True, False):
        store = opener()
        store.setup()
        _fill_sets(store, rows, dense)
        blobs = sum(len(d["bits"]) for d in store.db.bitmaps.find({}, {"bits": 1}))
        store.close()
        print(f"  {'dense' if dense else 'sparse'} members: bitmap blobs of {blobs / rows * 1e6 / 2**20:.2f} MiB "
              f"per million members (from {rows:,})")


def rss_child(records: int, path: str) -> None:
    """In a child process: login-like records through one SQLiteStore; prints peak RSS in MiB."""
    rnd = random.Random(7)
    users = records // 2
    store = SQLiteStore(path)
    store.setup()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for start in range(0, records, 20000):
        sets: dict[MemberKey, set[str]] = {}
        for i in range(start, min(records, start + 20000)):
            user = rnd.randrange(users)
            day = T0 + 86400 * (i * 30 // records)
            mk = MemberKey("login_day", "dl", str(user % 20), "2001", day)
            sets.setdefault(mk, set()).add(str(3_000_000_000 + user))
        b = Batch()
        for mk, uids in sets.items():
            b.add_members(mk, uids)
        store.apply(b)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    now = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    print(f"{peak / 1024:.0f} {base / 1024:.0f} {now:.0f} {store.cache.bytes / 2**20:.1f} {store.op_counts['writes']}")
    store.close()


def rss(tmp: Path, sizes: list[int]) -> None:
    print("Store memory (SQLite, default 64 MiB hot-set budget; 30 days x 20 servers, users = records / 2):")
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(n), str(tmp / f"rss_{n}.db")],
                             capture_output=True, text=True, check=True).stdout.split()
        peak, base, now, cache, writes = out
        print(f"  {n:>9,} records: peak RSS {peak} MiB (after open {base} MiB, at the end {now} MiB), cache {cache} MiB, "
              f"{int(writes) * 1000 / n:.1f} rows written per 1,000 records")


def main() -> None:
    """Run both backends, the sizes and the memory curve; prints the load average, since the machine is shared."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flushes", type=int, default=40)
    ap.add_argument("--size-rows", type=int, default=1_000_000)
    ap.add_argument("--rss-sizes", default="400000,1600000,4000000")
    ap.add_argument("--no-mongo", action="store_true")
    ap.add_argument("--only-rss", action="store_true", help="only the store memory curve")
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(int(args.rss_child[0]), args.rss_child[1])
        return
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings scale with it)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.only_rss:
            rss(tmp, [int(x) for x in args.rss_sizes.split(",")])
            return
        bench("sqlite (file, WAL, synchronous=NORMAL)", lambda: SQLiteStore(tmp / "bench.db"), args.flushes, 10)
        print("SQLite database size:")
        sqlite_size(tmp, args.size_rows)
        if not args.no_mongo:
            import pymongo

            from analytics.store.mongo import MongoStore
            from tests.mongo_server import close_session_server, mongo_url
            try:
                url = mongo_url()
                client = pymongo.MongoClient(url)
                names = []

                def opener() -> Store:
                    names.append(f"bench_{uuid.uuid4().hex[:8]}")
                    return MongoStore(client, names[-1], owns_client=False)
                bench("SecantusDB (MongoDB wire protocol; not MongoDB), replica set: flushes in transactions",
                      opener, max(5, args.flushes // 4), 3)
                print("SecantusDB bitmap size:")
                mongo_size(opener, args.size_rows // 5)
                for name in names:
                    client.drop_database(name)
            finally:
                close_session_server()
        rss(tmp, [int(x) for x in args.rss_sizes.split(",")])


if __name__ == "__main__":
    main()
