"""CURVE on the broker (issue 20, item 2): with [broker] curve_keys, tuples cross tcp only
between holders of the keys; whoever else reaches the receiver changes nothing.

Before the change a plain PUSH of one forged login tuple to a tcp receiver was counted like
any other (a forged payment lifted a day's takings from 130 to 6,000,030): the broker
accepted every frame from everyone.
"""
from __future__ import annotations

import json
from pathlib import Path

import gevent
import orjson
import pytest
import zmq
from zmq.auth import load_certificate

from analytics.config import BrokerSettings, GameSettings, Settings, load_settings
from analytics.testing import wait_until
from analytics.processes import ProcessRunner, free_port
from analytics.query import query
from analytics.store import open_store
from analytics.runners import LocalRunner
from analytics.topology import ComponentSpec, Topology, default_topology
from analytics.transport import create_keys, topic_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(55)]

AREA = "549140c8dbdb67794fc0fa3b"
TS = 1420688004


def login(uid: str) -> bytes:
    return json.dumps({"op": {"code": "login_logcount", "id": 1003}, "area": AREA, "ts": TS,
                       "data": {"corpid": 2001, "type": "signin", "server_name": "s1", "opno": 1003,
                                "opname": "login_logcount", "acct": uid}}).encode() + b"\n"


def forged(uid: str) -> list[bytes]:
    """One login tuple as the gamelog spout sends it, from a producer nobody runs."""
    body = {"game": "dl", "area": AREA, "plat": "2001", "uid": uid, "ts": TS, "code": "login_logcount"}
    return [topic_key("gamelog.login_logcount", 0), b"D|1|intruder", orjson.dumps([[f"forged-{uid}", TS, body]])]


def _users(store) -> int:
    return sum(d.get("count", 0) for d in store.find("loginhour"))


def _uids(store) -> set[str]:
    return {u for d in query(store, "loginhour", userlist=True) for u in d["userlist"]}


def curve_settings(tmp_path: Path, keys: Path) -> Settings:
    broker = BrokerSettings(receiver=f"tcp://127.0.0.1:{free_port()}", sender=f"tcp://127.0.0.1:{free_port()}",
                            curve_keys=str(keys))
    return load_settings(env={}, data_dir=str(tmp_path / "data"), store=f"sqlite:///{tmp_path / 's.db'}",
                         broker=broker)


class Pusher:
    """A PUSH socket of a plain pyzmq context (no key, or a key pair of its own): an intruder."""

    def __init__(self, endpoint: str, keys: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            server, public, secret = keys
            self.sock.setsockopt(zmq.CURVE_SERVERKEY, server)
            self.sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            self.sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        self.sock.connect(endpoint)

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def curve_topology(tmp_path: Path):
    """gamelog -> broker (listening on tcp with CURVE) -> loginhour, one login stored already."""
    keys = tmp_path / "curve"
    create_keys(keys)
    settings = curve_settings(tmp_path, keys)
    src = tmp_path / "game.log"
    src.write_bytes(login("1001"))
    settings.games = {"dl": GameSettings("dl", "Asia/Shanghai")}
    settings.sources = {"gamelog": {"files": [str(src)], "game": "dl", "pack_users": False}}
    store = open_store(settings.store)
    runner = LocalRunner(default_topology(settings, only=["gamelog", "loginhour"]), settings, store=store,
                         listen=True).start()
    try:
        assert wait_until(lambda: _users(store) == 1, 20), "timed out waiting for the first login to be stored"
        yield settings, runner, store, src
    finally:
        runner.stop()
        store.close()


def client_keys(directory: Path) -> tuple[bytes, bytes, bytes]:
    server, _ = load_certificate(directory / "broker.key")
    public, secret = load_certificate(directory / "client.key_secret")
    return server, public, secret


def test_a_plain_push_of_a_forged_tuple_changes_nothing(curve_topology):
    settings, runner, store, src = curve_topology
    intruder = Pusher(settings.broker.receiver)
    member = Pusher(settings.broker.receiver, client_keys(Path(settings.broker.curve_keys)))
    try:
        intruder.send(forged("6000030"))
        gevent.sleep(1.5)  # before the change, a plain PUSH was counted within a flush (1 s)
        assert _uids(store) == {"1001"}
        # The same frame from a holder of the client key pair is counted: the frame itself is fine.
        member.send(forged("7000001"))
        assert wait_until(lambda: _users(store) == 2, 20), "timed out waiting for the key holder's tuple"
        with open(src, "ab") as fh:  # and the broker goes on with the spout's own tuples
            fh.write(login("1002"))
        assert wait_until(lambda: _users(store) == 3, 20), "timed out waiting for a login read after the intrusion"
        gevent.sleep(1.2)
        assert _uids(store) == {"1001", "7000001", "1002"}
        assert runner.broker.stats()["malformed"] == 0 and not runner.failures()
    finally:
        intruder.close()
        member.close()


def test_a_curve_client_whose_key_is_not_in_the_directory_is_refused(curve_topology, tmp_path):
    settings, runner, store, src = curve_topology
    stranger_dir = tmp_path / "stranger"
    create_keys(stranger_dir, client_only=True)
    server, _ = load_certificate(Path(settings.broker.curve_keys) / "broker.key")
    public, secret = load_certificate(stranger_dir / "client.key_secret")
    stranger = Pusher(settings.broker.receiver, (server, public, secret))
    try:
        stranger.send(forged("6000030"))
        assert wait_until(lambda: runner.broker.stats()["refused"] >= 1, 10), "timed out waiting for the broker to refuse the stranger's key"
        with open(src, "ab") as fh:
            fh.write(login("1002"))
        assert wait_until(lambda: _users(store) == 2, 20), "timed out waiting for a login read after the refusal"
        gevent.sleep(1.2)
        assert _uids(store) == {"1001", "1002"} and not runner.failures()
    finally:
        stranger.close()


def test_read_stdin_gamelog_feeds_a_curve_broker(curve_topology):
    """The feeder outside the process (bin/read_stdin_gamelog) is a CURVE client of its own."""
    import io

    from spouts.gamelog import feed_stdin
    settings, runner, store, src = curve_topology
    done = gevent.spawn(feed_stdin, settings, "dl", stream=io.BytesIO(login("2001") + login("2002")),
                        connect_timeout=10)
    counts = done.get(timeout=30)
    assert counts["accepted"] == 2
    assert wait_until(lambda: _users(store) == 3, 20), "timed out waiting for the fed logins"
    assert _uids(store) == {"1001", "2001", "2002"}


def test_spout_broker_and_bolt_in_processes_of_their_own_over_curve(tmp_path, monkeypatch):
    """Every socket over tcp: the settings (curve_keys) reach each child through ProcessRunner's spec."""
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    keys = tmp_path / "curve"
    create_keys(keys)
    settings = curve_settings(tmp_path, keys)
    toys = "tests.support.toys"
    topo = Topology([ComponentSpec("src", f"{toys}:ListSpout", {"count": 300}),
                     ComponentSpec("storesum", f"{toys}:StoreSumBolt")])
    runner = ProcessRunner(topo, settings, log_dir=str(tmp_path)).start()
    try:
        report = runner.wait_drained(40)
    finally:
        codes = runner.stop()
    assert report.problems(topo) == []
    assert set(codes.values()) == {0}, codes
    assert "CURVE on, 2 public keys (*.key) allowed" in (tmp_path / "broker.log").read_text()
    with open_store(settings.store) as store:
        assert sum(d["n"] for d in store.find("toysum")) == 300
