"""Spout throughput: records/s from a file source into a PUSH socket, with and without the disk log.

    .venv/bin/python bench/bench_spouts.py [--records 200000] [--tcp]

Generates gamelog lines (the seed's shape, varied codes, areas and users), runs
GamelogSpout(files=[...], follow=False) to the end, and drains its frames with a
PULL socket in another greenlet of the same process (inproc, or tcp on 127.0.0.1
with --tcp). The figure covers reading, JSON parsing, validation, id hashing,
the disk log (when on), batching, encoding and the socket hop. Under a minute.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gevent  # noqa: E402
import zmq.green as zmq  # noqa: E402

from analytics.component import Context  # noqa: E402
from analytics.config import Settings  # noqa: E402
from analytics.transport import DATA, REPORT, parse  # noqa: E402
from spouts.gamelog import GAMELOG_CODES, GamelogSpout  # noqa: E402


def generate(path: Path, n: int) -> int:
    rnd = random.Random(3)
    codes = list(GAMELOG_CODES) + ["chat_log"]  # ~1 in 10 ignored, as in real logs
    with open(path, "w") as fh:
        for i in range(n):
            code = rnd.choice(codes)
            fh.write(json.dumps({"op": {"code": code, "id": 1003}, "area": f"5491{rnd.randrange(50):020d}",
                                 "ts": 1420646400 + i % 86400,
                                 "data": {"corpid": 2001 + rnd.randrange(5), "type": "signin",
                                          "server_name": f"server{rnd.randrange(100)}", "opno": 1003,
                                          "opname": code, "acct": str(rnd.randrange(10**10))}}) + "\n")
    return path.stat().st_size


def run(src: Path, data_dir: Path, disk_log: bool, tcp: bool) -> tuple[float, int, int]:
    zctx = zmq.Context()
    pull = zctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    if tcp:
        endpoint = f"tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}"
    else:
        endpoint = f"inproc://bench-{disk_log}"
        pull.bind(endpoint)
    settings = Settings(data_dir=str(data_dir))
    ctx = Context(settings=settings, zmq=zctx, receiver=endpoint, sender="inproc://unused", disk_log=disk_log)
    spout = GamelogSpout(ctx, files=[str(src)], follow=False, resume=False, game="dl")
    received = 0

    def drain() -> None:
        nonlocal received
        while True:
            msg = parse(pull.recv_multipart())
            if msg.kind == DATA:
                received += msg.count
            elif msg.kind == REPORT:
                return

    t0 = time.perf_counter()
    drainer = gevent.spawn(drain)
    spout.run()
    drainer.join()
    elapsed = time.perf_counter() - t0
    pull.close()
    zctx.term()
    return elapsed, received, sum(spout.counters.emitted.values()) + spout.counters.ignored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--tcp", action="store_true", help="PUSH/PULL over tcp://127.0.0.1 instead of inproc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "gamelog_input.txt")
        size = generate(src, args.records)
        print(f"{args.records} gamelog lines, {size / 1e6:.1f} MB, transport {'tcp' if args.tcp else 'inproc'}")
        for disk_log in (False, True):
            elapsed, received, handled = run(src, Path(tmp, f"data-{disk_log}"), disk_log, args.tcp)
            assert handled == args.records, (handled, args.records)
            logged = sum(p.stat().st_size for p in Path(tmp, f"data-{disk_log}").glob("gamelog_*.txt"))
            print(f"  disk log {'on ' if disk_log else 'off'}: {args.records / elapsed:>9,.0f} lines/s "
                  f"({received:,} published, {args.records - received:,} ignored codes; {elapsed:.2f} s; "
                  f"{size / elapsed / 1e6:.1f} MB/s in, {logged / 1e6:.1f} MB logged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
