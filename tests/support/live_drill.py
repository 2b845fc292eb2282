"""A live run under load, killed -9 at seeded random moments and restarted: what the
exactly-once tests (tests/integration/test_exactly_once.py) and bench/bench_recovery.py share.

* `Feed` appends unique gamelog lines (logins and yuanbao changes) to a followed file at a
  steady rate, and posts batches of HTTP events from several client threads; a batch
  counts once it was answered 200 (a client retries what got no answer, with the same
  events: the same ids, so a retry is never counted twice).
* `truth` is the brute-force figure of loginhour, loginday and coinday over every line
  written and every event answered 200.
* `stored` reads the same figures back from the store.
"""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import requests

GAME = "dl"
FILE_AREA, FILE_PLAT = "549140c8dbdb67794fc0fa3b", "2001"
HTTP_AREA, HTTP_PLAT = "a-http", "7"
#: Event time of the first record; records advance 1-3 s each (several hours and two days).
BASE_TS = 1420729200            # 2015-01-08 23:00 +08:00
TZ = timezone(timedelta(hours=8))  # the game's zone (Asia/Shanghai has no DST)


@dataclass
class Record:
    area: str
    plat: str
    uid: str
    ts: int
    change: int | None = None   # None: a login; else a yuanbao change


def _hour(ts: int) -> int:
    return ts - ts % 3600


def _day(ts: int) -> int:
    d = datetime.fromtimestamp(ts, TZ)
    return int(datetime(d.year, d.month, d.day, tzinfo=TZ).timestamp())


def truth(records: list[Record]) -> dict[str, dict[tuple, Any]]:
    """loginhour/loginday distinct users and coinday sums, computed by brute force."""
    hours: dict[tuple, set[str]] = {}
    days: dict[tuple, set[str]] = {}
    coins: dict[tuple, list[int]] = {}
    for r in records:
        server = (GAME, r.area, r.plat)
        if r.change is None:
            hours.setdefault((*server, _hour(r.ts)), set()).add(r.uid)
            days.setdefault((*server, _day(r.ts)), set()).add(r.uid)
        else:
            s = coins.setdefault((*server, _day(r.ts)), [0, 0, 0])
            if r.change < 0:
                s[0] -= r.change
                s[2] += 1
            else:
                s[1] += r.change
    return {"loginhour": {k: len(v) for k, v in hours.items()},
            "loginday": {k: len(v) for k, v in days.items()},
            "coinday": {k: tuple(v) for k, v in coins.items()}}


def stored(store_url: str) -> dict[str, dict[tuple, Any]]:
    """The same figures as stored (read with a store of its own: the run writes meanwhile)."""
    from analytics.store import open_store
    with open_store(store_url) as store:
        key = lambda d: (d["game"], d["area"], d["plat"], d["ts"])  # noqa: E731
        return {"loginhour": {key(d): d.get("count", 0) for d in store.find("loginhour")},
                "loginday": {key(d): d.get("count", 0) for d in store.find("loginday")},
                "coinday": {key(d): (d.get("consumed", 0), d.get("gained", 0), d.get("consume_times", 0))
                            for d in store.find("coinday")}}


def compare(want: dict[str, dict[tuple, Any]], got: dict[str, dict[tuple, Any]]) -> dict[str, int]:
    """How far `got` is from `want`: documents missing, extra or different, and how much of the
    figures (users of a login count, yuanbao of a coin day) is lost or counted twice."""
    def size(v: Any) -> int:
        return v if isinstance(v, int) else v[0] + v[1]
    out = {"missing": 0, "extra": 0, "different": 0, "lost": 0, "double": 0}
    for coll, docs in want.items():
        have = got.get(coll, {})
        for k in have.keys() - docs.keys():
            out["extra"] += 1
            out["double"] += size(have[k])
        for k, v in docs.items():
            h = have.get(k)
            if h == v:
                continue
            out["missing" if h is None else "different"] += 1
            diff = size(v) - (0 if h is None else size(h))
            out["lost" if diff > 0 else "double"] += abs(diff)
    return out


@dataclass
class Feed:
    """Writes the load: a followed gamelog file and HTTP clients, all seeded."""
    path: Path
    http_url: Callable[[], str]
    seed: int = 19
    lines_per_second: int = 800
    seconds: float = 20.0
    clients: int = 4
    batch: int = 25
    #: Batches each client posts per second (4 clients x 10 x 25 events: 1,000 events/s).
    batches_per_second: float = 10.0
    users: int = 3000
    written: list[Record] = field(default_factory=list)
    acked: list[Record] = field(default_factory=list)
    posted: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, rng: random.Random, i: int, area: str, plat: str) -> Record:
        uid = str(3284680000 + rng.randrange(self.users)) if rng.random() < 0.7 else f"u{rng.randrange(self.users)}"
        ts = BASE_TS + i * 2 + rng.randrange(3)
        change = None if rng.random() < 0.6 else rng.choice([-1, -1, 1]) * rng.randrange(1, 500)
        return Record(area, plat, uid, ts, change)

    def _line(self, r: Record, n: int) -> bytes:
        code = "login_logcount" if r.change is None else "coin_logchange"
        data: dict[str, Any] = {"corpid": int(r.plat), "type": code.split("_")[0], "server_name": "s1",
                                "opno": n, "opname": code, "acct": r.uid}
        if r.change is not None:
            data.update(coin_type="yuanbao", change=r.change, reason="shop", rest=100)
        return json.dumps({"op": {"code": code, "id": n}, "area": r.area, "ts": r.ts, "data": data}).encode() + b"\n"

    def write_file(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        total = int(self.lines_per_second * self.seconds)
        chunk = max(1, self.lines_per_second // 20)
        start = time.monotonic()
        with open(self.path, "ab") as fh:
            for i in range(0, total, chunk):
                recs = [self._record(rng, n, FILE_AREA, FILE_PLAT) for n in range(i, min(i + chunk, total))]
                fh.write(b"".join(self._line(r, i + k) for k, r in enumerate(recs)))
                fh.flush()
                self.written.extend(recs)
                delay = start + (i + chunk) / self.lines_per_second - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if stop.is_set():
                    return

    def _events(self, recs: list[Record], base: int) -> list[dict[str, Any]]:
        out = []
        for k, r in enumerate(recs):
            ev: dict[str, Any] = {"game": GAME, "area": r.area, "plat": r.plat, "uid": r.uid, "ts": r.ts,
                                  "code": "login_logcount" if r.change is None else "coin_logchange",
                                  "data": {"n": base + k}}
            if r.change is not None:
                ev["data"].update(coin_type="yuanbao", change=r.change, reason="shop")
            out.append(ev)
        return out

    def post(self, client: int, stop: threading.Event) -> None:
        rng = random.Random(self.seed * 1000 + client)
        session = requests.Session()
        n_batches = int(self.seconds * self.batches_per_second)
        start = time.monotonic()
        for b in range(n_batches):
            base = (client * 1_000_000) + b * self.batch
            recs = [self._record(rng, (base % 7919) + k, HTTP_AREA, HTTP_PLAT) for k in range(self.batch)]
            body = self._events(recs, base)
            while True:   # until answered 200: a retry sends the very same events
                try:
                    r = session.post(self.http_url(), json=body, timeout=5)
                    if r.status_code == 200 and r.json().get("accepted") == len(body):
                        break
                except (requests.RequestException, ValueError):
                    session = requests.Session()
                with self._lock:
                    self.retries += 1
                time.sleep(0.1)
                if stop.is_set():
                    return
            with self._lock:
                self.acked.extend(recs)
                self.posted += len(recs)
            time.sleep(max(0.0, start + (b + 1) / self.batches_per_second - time.monotonic()))


def kill_schedule(seed: int, seconds: float, kills: int) -> list[float]:
    """Seeded moments (seconds after the start) to kill -9 at: spread over the load, at least 1.5 s
    apart, the last one in its final seconds (what follows it measures the recovery under load)."""
    rng = random.Random(seed)
    while True:
        moments = sorted(rng.uniform(1.5, seconds - 3.5) for _ in range(kills - 1))
        moments.append(rng.uniform(seconds - 2.5, seconds - 1.0))
        if all(b - a >= 1.5 for a, b in zip(moments, moments[1:])):
            return moments
