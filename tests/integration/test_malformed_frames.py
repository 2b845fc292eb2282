"""Malformed messages pushed into the broker's receiver by any local process are counted,
dead-lettered and dropped; the topology keeps counting valid events (issue 19, item 3).

Before the fix one single-frame message raised IndexError in Broker._forward and the
broker's greenlet died: nothing was forwarded any more while the process stayed up.
"""
from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import zmq

from analytics.config import BrokerSettings, GameSettings, load_settings
from analytics.testing import wait_until
from analytics.processes import free_port
from analytics.store import open_store
from analytics.runners import LocalRunner
from analytics.topology import default_topology

pytestmark = [pytest.mark.integration, pytest.mark.timeout(55)]

AREA = "549140c8dbdb67794fc0fa3b"
KEY = b"gamelog.login_logcount\x00000"


def login(i: int, ts: int = 1420688004) -> bytes:
    return json.dumps({"op": {"code": "login_logcount", "id": 1003}, "area": AREA, "ts": ts + i,
                       "data": {"corpid": 2001, "type": "signin", "server_name": "s1", "opno": 1003,
                                "opname": "login_logcount", "acct": str(3284681000 + i)}}).encode() + b"\n"


def _hour_count(store) -> int:
    return sum(d.get("count", 0) for d in store.find("loginhour"))


MALFORMED = {
    "one frame": [b"x"],
    "two frames": [KEY, b"D|1|evil"],
    "bad header": [KEY, b"Z|1|evil", b"[]"],
    "header without producer": [KEY, b"D|1", b"[]"],
    "count not a number": [KEY, b"D|x|evil", b"[]"],
    "data on a barrier key": [b"gamelog.login_logcount\x00*", b"D|1|evil", b"[]"],
    "empty frames": [b"", b"", b""],
    "bad payload": [KEY, b"D|1|evil", b"not json"],
    "wrong body shape": [KEY, b"D|1|evil", orjson.dumps([[1, 2, 3]])],
    "body not a record": [KEY, b"D|1|evil", orjson.dumps([["id1", 1420688004, {"no": "gamelog"}]])],
    "200 kB nest": [KEY, b"D|1|evil", b"[" * 100_000 + b"]" * 100_000],
    "bad checkpoint barrier": [b"gamelog.login_logcount\x00*", b"K|0|evil", b"{\"seq\": \"x\"}"],
    "forged checkpoint barrier": [b"gamelog.login_logcount\x00*", b"K|0|gamelog",
                                  orjson.dumps({"inc": "x", "seq": 9, "partitions": {}, "origins": []})],
}


def test_malformed_messages_are_counted_and_a_valid_event_still_counts(tmp_path: Path):
    src = tmp_path / "game.log"
    src.write_bytes(login(0))
    receiver = f"tcp://127.0.0.1:{free_port()}"
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), store=f"sqlite:///{tmp_path / 's.db'}",
                             broker=BrokerSettings(receiver=receiver, sender=f"tcp://127.0.0.1:{free_port()}"))
    settings.games = {"dl": GameSettings("dl", "Asia/Shanghai")}
    settings.sources = {"gamelog": {"files": [str(src)], "game": "dl", "pack_users": False}}
    store = open_store(settings.store)
    runner = LocalRunner(default_topology(settings, only=["gamelog", "loginhour"]), settings, store=store,
                         listen=True).start()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(receiver)
    try:
        assert wait_until(lambda: _hour_count(store) == 1, 20), "timed out waiting for the first login to be stored"
        for frames in MALFORMED.values():
            push.send_multipart(frames)
        broker = runner.broker
        assert wait_until(lambda: broker.malformed >= 7, 20), "timed out waiting for the broker to drop the malformed heads"
        with open(src, "ab") as fh:
            fh.write(login(1))
        assert wait_until(lambda: _hour_count(store) == 2, 20), "timed out waiting for a valid login after the malformed messages"
        bolt = runner.components["loginhour"]
        assert wait_until(lambda: bolt.counters.rejected + bolt.counters.errors >= 5, 10), "timed out waiting for the bolt to reject bad payloads"
        assert not broker._greenlet.dead and not any(g.dead for g in runner.greenlets)
        assert broker.malformed == 7
        letters = (tmp_path / "data" / "deadletter" / "broker.jsonl").read_text().splitlines()
        assert len(letters) == 7 and all(json.loads(ln)["reason"].startswith("frame: ") for ln in letters)
        bolt_letters = (tmp_path / "data" / "deadletter" / "loginhour.jsonl").read_text()
        assert "codec: bad batch frame" in bolt_letters and "codec: bad checkpoint barrier" in bolt_letters
        # The forged barrier named a sequence this bolt never saw from 'gamelog': a gap, not an ack.
        assert bolt.counters.gaps >= 1
    finally:
        push.close()
        ctx.term()
        runner.stop()
        store.close()
