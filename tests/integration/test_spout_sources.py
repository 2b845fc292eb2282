"""Spout sources for real: growing and rotating files, restarts, the disk log, HTTP services
that page, fail and sign, and stdin through bin/read_stdin_gamelog into a tcp socket.

Servers are http.server in threads on 127.0.0.1 port 0; spouts run their real loop against
a PULL socket bound by the test (tests/spout_sink.py).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import gevent
import orjson
import pytest

from analytics.config import Settings
from analytics.sources import canonical
from analytics.tuples import record_id
from spouts.gamelog import GamelogSpout
from spouts.payment import PaymentSpout
from spouts.syncuser import SyncUserSpout
from tests.spout_sink import Sink

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
DAY = 1420646400  # 2015-01-08 00:00 +08:00 (Asia/Shanghai, the default zone)


def rec(i: int, code: str = "login_logcount", ts: int = 1420688004) -> dict:
    return {"op": {"code": code, "id": 1003}, "area": "549140c8dbdb67794fc0fa3b", "ts": ts + i,
            "data": {"corpid": 2001, "type": "signin", "server_name": "server1009", "opno": 1003,
                     "opname": code, "acct": str(3284681000 + i)}}


def lines(a: int, b: int) -> list[bytes]:
    return [json.dumps(rec(i)).encode() + b"\n" for i in range(a, b)]


def ids(raws: list[bytes]) -> list[str]:
    return [record_id(r, "dl") for r in raws]


def append(path: Path, data: list[bytes] | bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data if isinstance(data, bytes) else b"".join(data))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # These tests follow each line through the readers as a tuple of its own, so the gamelog
    # spout does not pack login lines here (packing: tests/unit/test_spouts.py).
    return Settings(data_dir=str(tmp_path / "data"), sources={"gamelog": {"pack_users": False}})


FAST = dict(rescan_seconds=0.05, rotate_grace=0.2, state_interval=0.0)


# -- files -------------------------------------------------------------------------------
def test_follow_growth_partial_lines_and_rotation(settings, tmp_path):
    src = tmp_path / "game.log"
    first = lines(0, 300)
    append(src, first)
    with Sink() as sink:
        spout = GamelogSpout(sink.context(settings), files=[str(src)], game="dl", **FAST)
        g = sink.start(spout)
        sink.collect(lambda: len(sink.tuples) >= 300)

        grown = lines(300, 1200)                     # more than one chunk at once
        half = grown[-1][:40]
        append(src, grown[:-1] + [half])             # ...and an incomplete last line
        sink.collect(lambda: len(sink.tuples) >= 1199)
        gevent.sleep(0.3)
        sink.poll()
        assert len(sink.tuples) == 1199              # the incomplete line waits for its end
        append(src, grown[-1][40:])
        sink.collect(lambda: len(sink.tuples) >= 1200)

        # rotation: the file is renamed away, the writer adds its last lines to it, a new file takes the name
        os.rename(src, tmp_path / "game.log.1")
        tail = lines(1200, 1250)
        append(tmp_path / "game.log.1", tail)
        fresh = lines(1250, 1400)
        append(src, fresh)
        sink.collect(lambda: len(sink.tuples) >= 1400)
        gevent.sleep(0.3)
        more = lines(1400, 1410)
        append(src, more)                            # the new file is followed too
        sink.collect(lambda: len(sink.tuples) >= 1410)
        sink.stop(spout, g)

    got = [t.id for t in sink.tuples]
    assert sorted(got) == sorted(ids(first + grown + tail + fresh + more))
    assert len(set(got)) == len(got) == 1410
    assert spout.counters.rejected == 0


def test_glob_picks_up_new_files(settings, tmp_path):
    (tmp_path / "in").mkdir()
    append(tmp_path / "in" / "a.log", lines(0, 10))
    with Sink() as sink:
        spout = GamelogSpout(sink.context(settings), files=[str(tmp_path / "in" / "*.log")], game="dl", **FAST)
        g = sink.start(spout)
        sink.collect(lambda: len(sink.tuples) >= 10)
        append(tmp_path / "in" / "b.log", lines(10, 25))
        append(tmp_path / "in" / "ignored.txt", lines(100, 110))
        sink.collect(lambda: len(sink.tuples) >= 25)
        gevent.sleep(0.2)
        sink.stop(spout, g)
    assert sorted(t.id for t in sink.tuples) == sorted(ids(lines(0, 25)))


def test_restart_resumes_from_the_saved_offset_without_loss_or_duplication(settings, tmp_path):
    src = tmp_path / "game.log"
    append(src, lines(0, 700))
    with Sink() as sink:
        spout = GamelogSpout(sink.context(settings), files=[str(src)], game="dl", **FAST)
        g = sink.start(spout)
        sink.collect(lambda: len(sink.tuples) >= 700)
        sink.stop(spout, g)
        assert sorted(t.id for t in sink.tuples) == sorted(ids(lines(0, 700)))

        state = orjson.loads(Path(settings.data_dir, "spoolstate", "gamelog.json").read_bytes())
        (entry,) = state["files"].values()
        assert entry["offset"] == src.stat().st_size and entry["path"] == str(src)

        # while it is down: more lines, and a half-written one
        new = lines(700, 900)
        append(src, new + [b'{"op": {"code": "login'])
        sink.tuples.clear()
        spout2 = GamelogSpout(sink.context(settings), files=[str(src)], game="dl", **FAST)
        g2 = sink.start(spout2)
        sink.collect(lambda: len(sink.tuples) >= 200)
        gevent.sleep(0.2)
        sink.poll()
        assert sorted(t.id for t in sink.tuples) == sorted(ids(new))   # exactly the new lines
        sink.stop(spout2, g2)

        # a third start with nothing new emits nothing, and the incomplete line is still waiting
        sink.tuples.clear()
        spout3 = GamelogSpout(sink.context(settings), files=[str(src)], game="dl", **FAST)
        g3 = sink.start(spout3)
        gevent.sleep(0.3)
        sink.stop(spout3, g3)
        assert sink.tuples == []
        assert spout3.counters.rejected == 0


def test_replay_mode_reads_to_the_end_and_reports_progress(settings, tmp_path):
    src = tmp_path / "game.log"
    append(src, lines(0, 1234))
    with Sink() as sink:
        spout = GamelogSpout(sink.context(settings, disk_log=False), files=[str(src)], follow=False,
                             resume=False, game="dl")
        assert spout.progress() == (0, src.stat().st_size)  # the total is known before the first read
        sink.run(spout)
    assert len(sink.tuples) == 1234
    assert spout.progress() == (src.stat().st_size, src.stat().st_size)
    assert not Path(settings.data_dir, "spoolstate").exists()  # a replay leaves the live offsets alone
    assert not list(Path(settings.data_dir).glob("gamelog_*.txt"))  # disk_log=False writes none


def test_disk_log_holds_every_record_before_it_is_published_and_replays_to_the_same_ids(settings, tmp_path):
    src = tmp_path / "game.log"
    raws = lines(0, 2000) + [b"garbage\n"] + [json.dumps(rec(5000, "chat")).encode() + b"\n"]
    append(src, raws)
    data = Path(settings.data_dir)
    checked = []

    def on_frame(tuples):  # at the moment a frame arrives, its records are already in the log
        logged = {record_id(x, "dl") for p in data.glob("gamelog_*.txt") for x in p.read_bytes().splitlines()}
        missing = [t.id for t in tuples if t.id not in logged]
        assert not missing, f"{len(missing)} published before being logged"
        checked.append(len(tuples))

    with Sink() as sink:
        sink.on_frame = on_frame
        spout = GamelogSpout(sink.context(settings), files=[str(src)], follow=False, game="dl",
                             rotate_bytes=50_000)   # several log files
        sink.run(spout)
        live = sorted(t.id for t in sink.tuples)
    assert sum(checked) == 2000 and live == sorted(ids(raws[:2000]))
    logs = sorted(data.glob("gamelog_*.txt"))
    assert len(logs) > 1
    assert b"".join(p.read_bytes() for p in logs) == b"".join(raws[:2000])  # rejected/ignored are not logged

    # replay the disk log, as `analytics replay` does: same ids, nothing written again
    with Sink() as sink:
        replay = GamelogSpout(sink.context(settings, disk_log=False), "replay",
                              files=[str(data / "gamelog_*.txt")], follow=False, resume=False, game="dl")
        sink.run(replay)
    assert sorted(t.id for t in sink.tuples) == live
    assert sorted(data.glob("gamelog_*.txt")) == logs


# -- HTTP --------------------------------------------------------------------------------
class FakeService:
    """A tiny HTTP service in a thread: `answer(params) -> (status, body, headers)`."""

    def __init__(self, answer: Callable[[dict[str, str]], tuple[int, bytes, dict[str, str]]]) -> None:
        self.answer = answer
        self.requests: list[dict[str, str]] = []
        self.port = 0
        self.start()

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                outer.requests.append(params)
                status, body, headers = outer.answer(params)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/records"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def polled(sink: Sink, svc: FakeService, times: int = 1) -> None:
    """Wait until the spout has asked the service `times` more times after a whole answer: what the
    answers before made it emit has arrived (receiving meanwhile), so the test can count it."""
    n = len(svc.requests)
    sink.collect(lambda: len(svc.requests) > n + times)


HTTP_FAST = dict(poll_seconds=0.05, backoff_initial=0.05, backoff_max=0.2, timeout=2.0, state_interval=0.0)


def test_gamelog_http_pages_with_a_cursor_survives_an_outage_and_resumes(settings):
    records = [rec(i) for i in range(1200)]

    def answer(p):
        start, limit = int(p["cursor"] or 0), int(p["limit"])
        page = records[start:start + limit]
        return 200, orjson.dumps({"records": page, "cursor": str(start + len(page))}), {}

    svc = FakeService(answer)
    try:
        with Sink() as sink:
            spout = GamelogSpout(sink.context(settings), http=svc.url, game="dl", limit=500, **HTTP_FAST)
            g = sink.start(spout)
            sink.collect(lambda: len(sink.tuples) >= 1200)
            assert [r["cursor"] for r in svc.requests[:3]] == ["", "500", "1000"]  # full pages followed at once
            assert all(r["limit"] == "500" for r in svc.requests)

            svc.stop()                                          # outage
            records.extend(rec(i) for i in range(1200, 1500))   # produced meanwhile
            sink.collect(lambda: spout.health["state"] == "degraded")
            assert spout.health["reason"].startswith("unreachable: ")
            gevent.sleep(0.3)
            assert spout.reader.cursor == "1200"                # the cursor did not move
            svc.start()                                         # back, same port
            sink.collect(lambda: len(sink.tuples) >= 1500)
            sink.collect(lambda: spout.health["state"] == "ok")
            sink.stop(spout, g)

            got = [t.id for t in sink.tuples]
            assert sorted(got) == sorted(record_id(canonical(r), "dl") for r in records)
            assert len(set(got)) == 1500
            state = orjson.loads(Path(settings.data_dir, "spoolstate", "gamelog.json").read_bytes())
            assert state == {"cursor": "1500"}

            # a restart continues from the saved cursor
            records.extend(rec(i) for i in range(1500, 1510))
            sink.tuples.clear()
            spout2 = GamelogSpout(sink.context(settings), http=svc.url, game="dl", limit=500, **HTTP_FAST)
            g2 = sink.start(spout2)
            sink.collect(lambda: len(sink.tuples) >= 10)
            polled(sink, svc)                                   # asked again: nothing emitted twice
            sink.stop(spout2, g2)
            assert sorted(t.id for t in sink.tuples) == sorted(record_id(canonical(r), "dl") for r in records[1500:])
            # what came over HTTP is in the disk log, one canonical line per record
            logged = [x for p in Path(settings.data_dir).glob("gamelog_*.txt") for x in p.read_bytes().splitlines()]
            assert sorted(record_id(x, "dl") for x in logged) == sorted(record_id(canonical(r), "dl") for r in records)
    finally:
        svc.stop()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def payment(day: int, users: dict, area: str = "a1") -> dict:
    return {"game": "dl", "area": area, "plat": "2001", "ts": day, "users": users}


def test_payment_http_time_cursor_day_rollover_requery_and_signature(settings):
    secret = "s3cret"
    service: dict[int, list[dict]] = {DAY: [payment(DAY, {"u1": {"times": 1, "amount": 2.0}})]}
    mode = {"sign": "good", "down": False}

    def answer(p):
        if mode["down"]:
            return 503, b"maintenance", {}
        start, end = int(p["start"]), int(p["end"])
        body = orjson.dumps([r for day, rs in sorted(service.items()) if start <= day <= end for r in rs])
        sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Signature": sig if mode["sign"] == "good" else "0" * 64}
        return 200, body, headers

    clock = Clock(DAY + 86400 - 60)  # 23:59 local
    svc = FakeService(answer)
    try:
        with Sink() as sink:
            spout = PaymentSpout(sink.context(settings, clock=clock), http=svc.url, game="dl", secret=secret,
                                 requery_delay=600, **HTTP_FAST)
            g = sink.start(spout)
            sink.collect(lambda: len(sink.tuples) >= 1)
            polled(sink, svc, times=2)
            assert svc.requests[0] == {"game": "dl", "start": str(DAY), "end": str(DAY + 86400 - 60)}
            assert len(sink.tuples) == 1  # polled again and again, the same report is not re-emitted

            # a late order for the day, then midnight passes (Asia/Shanghai)
            service[DAY].append(payment(DAY, {"u2": {"times": 1, "amount": 6.0}}, area="a2"))
            service[DAY + 86400] = [payment(DAY + 86400, {"u3": {"times": 2, "amount": 30.0}})]
            clock.now = DAY + 86400 + 30
            sink.collect(lambda: len(sink.tuples) >= 3)
            n = len(svc.requests)
            polled(sink, svc)
            later = svc.requests[n:]
            assert later and all(r["start"] == str(DAY + 86400) for r in later)  # the cursor moved to the new day

            # an order of the previous day settled even later: caught by the re-query after requery_delay
            service[DAY].append(payment(DAY, {"u4": {"times": 1, "amount": 1.0}}, area="a3"))
            clock.now = DAY + 86400 + 30 + 601
            sink.collect(lambda: len(sink.tuples) >= 4)
            assert {"game": "dl", "start": str(DAY), "end": str(DAY + 86400)} in svc.requests

            # bad signatures: dead-lettered, nothing emitted, degraded; fixed: the records arrive
            service[DAY + 86400].append(payment(DAY + 86400, {"u5": {"times": 1, "amount": 5.0}}, area="a5"))
            mode["sign"] = "bad"
            sink.collect(lambda: spout.health["state"] == "degraded")
            assert spout.health["reason"].startswith("signature: ")
            polled(sink, svc)
            assert len(sink.tuples) == 4
            mode["sign"] = "good"
            sink.collect(lambda: len(sink.tuples) >= 5)

            # an outage of the service (503): degraded, then back, nothing lost
            mode["down"] = True
            service[DAY + 86400].append(payment(DAY + 86400, {"u6": {"times": 1, "amount": 6.0}}, area="a6"))
            sink.collect(lambda: spout.health["reason"].startswith("http: "))
            mode["down"] = False
            sink.collect(lambda: len(sink.tuples) >= 6)
            sink.collect(lambda: spout.health["state"] == "ok")
            polled(sink, svc)
            sink.stop(spout, g)

        want = [r for rs in service.values() for r in rs]
        assert sorted(t.id for t in sink.tuples) == sorted(record_id(canonical(r)) for r in want)
        assert len(sink.tuples) == 6
        assert {t.body["area"]: t.body["users"] for t in sink.tuples}["a2"] == {"u2": {"times": 1, "amount": 6.0}}
        dls = [orjson.loads(x) for x in Path(settings.data_dir, "deadletter", "payment.jsonl").read_bytes().splitlines()]
        assert dls and all(d["reason"].startswith("signature: X-Signature '000") for d in dls)
        assert spout.dead_letters.by_reason == {"signature": len(dls)}
    finally:
        svc.stop()


def test_syncuser_http_since_cursor_is_inclusive_without_duplicates(settings):
    base = {"game": "wsdx", "area": "a", "plat": "1059", "name": "n", "grade": 3, "rest_yuanbao": 0,
            "birthday": 1418637569, "acctid": "x@y", "score": 1, "login_time": 1418888736}
    users = [{**base, "uid": f"u{i}", "ts": 1423213000 + i // 2} for i in range(10)]

    svc = FakeService(lambda p: (200, orjson.dumps([u for u in users if u["ts"] >= int(p["since"])]), {}))
    try:
        with Sink() as sink:
            spout = SyncUserSpout(sink.context(settings, clock=lambda: 1423213100.0), http=svc.url, **HTTP_FAST)
            g = sink.start(spout)
            sink.collect(lambda: len(sink.tuples) >= 10)
            users.append({**base, "uid": "late", "ts": 1423213004})   # same second as the last seen
            users.append({**base, "uid": "next", "ts": 1423213009})
            sink.collect(lambda: len(sink.tuples) >= 12)
            polled(sink, svc)
            sink.stop(spout, g)
        assert svc.requests[0]["since"] == "0"
        assert sorted(t.body["uid"] for t in sink.tuples) == sorted(u["uid"] for u in users)
    finally:
        svc.stop()


# -- stdin ------------------------------------------------------------------------------
def test_read_stdin_gamelog_feeds_a_tcp_receiver_and_loses_nothing(tmp_path):
    raws = lines(0, 5000) + [b"not json\n", json.dumps(rec(9, "chat_log")).encode() + b"\n"]
    src = tmp_path / "gamelog_201502061738.txt"
    src.write_bytes(b"".join(raws))
    with Sink("tcp") as sink:
        cfg = tmp_path / "analytics.toml"
        cfg.write_text(f'[analytics]\ndata_dir = "{tmp_path / "data"}"\n\n'
                       f'[broker]\nreceiver = "{sink.endpoint}"\n\n[sources.gamelog]\ngame = "dl"\npack_users = false\n')
        with open(src, "rb") as stdin:
            proc = subprocess.Popen([str(ROOT / "bin" / "read_stdin_gamelog"), "--config", str(cfg)],
                                    stdin=stdin, stderr=subprocess.PIPE, cwd=tmp_path)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            sink.poll(0.05)
        sink.collect(lambda: any(r.get("event") == "eos" for r in sink.reports), 10)
        err = proc.stderr.read().decode()
        assert proc.wait(5) == 0, err
    assert sorted(t.id for t in sink.tuples) == sorted(ids(raws[:5000]))
    assert all(t.body["game"] == "dl" for t in sink.tuples)
    assert "read 5002, accepted 5000, rejected 1, ignored 1" in err
    assert {b["topic"]: b["sent"] for b in sink.barriers}["gamelog.login_logcount"] == 5000
    assert {b["component"] for b in sink.barriers} == {"gamelog_stdin"}
    assert not list((tmp_path / "data").glob("gamelog_*.txt"))  # the lines come from a log already
