"""What the MongoDB store pays per written document, against a raw bulk_write of the same documents.

The Mongo issue's write-cost benchmark (issue 23, item 5), on SecantusDB (MongoDB
wire protocol; not MongoDB) started by tests/mongo_server.py, or on
$ANALYTICS_TEST_MONGO_URL:

1. The realistic mix of bench_mix (one game and its payments) is replayed once in
   process into a throw-away SQLite store, and every Batch the bolts hand the store
   is kept (a deep copy).
2. Project: those batches are applied, in order, by MongoStore to a fresh database
   (flushes in transactions, bitmaps merged by compare-and-swap, derived documents),
   timed; documents/s = the store's own count of documents written / seconds.
3. Raw: every document the project left in that database (all collections) is
   written again with pymongo `bulk_write` of InsertOne, 1,000 a call, unordered,
   into another fresh database on the same server, timed.

Printed: both documents/s and their ratio (the aim of the Mongo issue: >= 0.5),
with the reads the store counts. Then, with `--replay`, the mix end to end on
SecantusDB with the CLI (records/s, reads and writes per 1,000 records), for this
checkout and for `--baseline CHECKOUT` in the same invocation.

    .venv/bin/python bench/bench_mongo_writes.py [--users 700] [--days 40] [--replay] [--baseline DIR]

The machine is shared: compare ratios of one invocation.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_mix import GAMES, make_mix, replay  # noqa: E402


def capture_batches(files: list[Path], game: str, work: Path) -> list[Any]:
    """Replay `files` in process into SQLite; every Batch handed to the store, deep-copied, in order."""
    from analytics.app import replay as run_replay, source_spec
    from analytics.cli import _files_by_source
    from analytics.config import load_settings
    from analytics.store.sqlite import SQLiteStore

    batches: list[Any] = []
    apply = SQLiteStore.apply

    def keep(self: SQLiteStore, batch: Any) -> None:
        batches.append(copy.deepcopy(batch))
        apply(self, batch)
    SQLiteStore.apply = keep  # type: ignore[method-assign]
    try:
        settings = load_settings(str(work / "mix.toml"), env={}, store=f"sqlite:///{work}/capture.db",
                                 data_dir=str(work / "data"))
        specs = [source_spec(settings, source, fs, game)
                 for source, fs in _files_by_source([str(f) for f in files], None).items()]
        report = run_replay(settings, specs, progress=False, timeout=600)
        if report.problems():
            sys.exit(f"capture replay: {report.problems()}")
    finally:
        SQLiteStore.apply = apply  # type: ignore[method-assign]
    return [b for b in batches if b]


def write_cost(url: str, batches: list[Any]) -> dict[str, float]:
    """Project documents/s (MongoStore.apply of the batches) against raw bulk_write of what it left."""
    import pymongo
    from pymongo import InsertOne

    from analytics.store.mongo import MongoStore

    client = pymongo.MongoClient(url)
    project_db, raw_db = f"bench_project_{uuid.uuid4().hex[:8]}", f"bench_raw_{uuid.uuid4().hex[:8]}"
    try:
        store = MongoStore(client, project_db, owns_client=False)
        store.setup()
        before = dict(store.op_counts)
        t0 = time.perf_counter()
        for b in batches:
            store.apply(b)
        project_s = time.perf_counter() - t0
        written = store.op_counts["writes"] - before.get("writes", 0)
        reads = store.op_counts["reads"] - before.get("reads", 0)
        docs: dict[str, list[dict[str, Any]]] = {}
        for name in client[project_db].list_collection_names():
            docs[name] = list(client[project_db][name].find({}))
        for name in docs:       # the same indexes, so the raw writes maintain what the project's maintain
            for spec in client[project_db][name].list_indexes():
                if spec["name"] != "_id_":
                    client[raw_db][name].create_index(list(spec["key"].items()), name=spec["name"],
                                                      unique=bool(spec.get("unique")))
        total = sum(map(len, docs.values()))
        t0 = time.perf_counter()
        for name, rows in docs.items():
            for i in range(0, len(rows), 1000):
                client[raw_db][name].bulk_write([InsertOne(d) for d in rows[i:i + 1000]], ordered=False)
        raw_s = time.perf_counter() - t0
        store.close()
        return {"project_docs": written, "project_reads": reads, "project_s": project_s,
                "raw_docs": total, "raw_s": raw_s, "batches": len(batches)}
    finally:
        client.drop_database(project_db)
        client.drop_database(raw_db)
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=700)
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--replay", action="store_true", help="also the mix end to end on SecantusDB with the CLI")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT", help="with --replay: another checkout too")
    args = ap.parse_args()
    from tests.mongo_server import close_session_server, mongo_url
    work = Path(tempfile.mkdtemp(prefix="bench-mongo-"))
    try:
        files = make_mix(work, args.users, args.days)
        game = next(iter(GAMES))
        one = {game: files[game]}
        n = sum(sum(1 for _ in open(f, "rb")) for f in files[game])
        url = mongo_url()
        batches = capture_batches(files[game], game, work)
        cost = write_cost(url, batches)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(f"bench_mongo_writes {when}: the mix of one game ({n:,} records, {cost['batches']:,} store batches); "
              f"SecantusDB (MongoDB wire protocol; not MongoDB) at {url.split('@')[-1]}; {os.cpu_count()} cores "
              f"(shared machine)")
        p_rate, r_rate = cost["project_docs"] / cost["project_s"], cost["raw_docs"] / cost["raw_s"]
        print(f"  project (MongoStore.apply of the batches): {cost['project_docs']:,} documents written in "
              f"{cost['project_s']:.2f} s = {p_rate:,.0f} docs/s"
              + (f" ({cost['project_reads']:,} reads counted)" if cost["project_reads"] else ""))
        print(f"  raw bulk_write (InsertOne x 1,000, unordered) of the {cost['raw_docs']:,} documents it left: "
              f"{cost['raw_s']:.2f} s = {r_rate:,.0f} docs/s")
        print(f"  project / raw: {p_rate / r_rate:.2f} (aim >= 0.5) {'ok' if p_rate / r_rate >= 0.5 else 'MISSED'}")
        if args.replay:
            runs = {}
            if args.baseline:
                runs[f"baseline {args.baseline.name}"] = replay(one, work, f"{url.rstrip('/')}/bench_b_{uuid.uuid4().hex[:8]}",
                                                                code=args.baseline)
            runs["this checkout"] = replay(one, work, f"{url.rstrip('/')}/bench_c_{uuid.uuid4().hex[:8]}")
            for label, r in runs.items():
                ops = r["ops"]
                print(f"  analytics replay on SecantusDB, {label}: {n / r['seconds']:,.0f} records/s; per 1,000 "
                      f"records {1000 * ops.get('reads', 0) / n:.0f} reads, {1000 * ops.get('writes', 0) / n:.0f} "
                      f"writes")
    finally:
        close_session_server()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
