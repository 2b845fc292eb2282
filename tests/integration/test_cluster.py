"""analytics.cluster against a real etcd on 127.0.0.1 (started by the fixtures, TTL 2 s).

gevent: this pytest process is NOT monkey-patched (patching here would leak into
other tests). The registration greenlets still run: they get the hub whenever the
test waits with gevent.sleep / Event.wait, and each HTTP call to etcd blocks the
hub for its few milliseconds. The child processes, which stand for real
components, call monkey.patch_all() first as the CLI entry point will.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import gevent
import pytest

from analytics import cluster
from analytics.cluster import (EXIT_PROBLEM, BrokerNotFound, PartitionAssigner, discover_broker, list_nodes,
                               node_key, publish_broker, render_status, start_node, status)

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
TTL = 2

CHILD = r"""
import json, sys
from gevent import monkey; monkey.patch_all()
import gevent
from analytics.config import Settings
from analytics import cluster
a = json.loads(sys.argv[1])
s = Settings(etcd=a["etcd"], cluster=a["cluster"], extra={"cluster": {"lease_ttl": a["ttl"]}})
if a["kind"] == "node":
    reg = cluster.start_node(s, a["name"], "bolt", {"sub": "tcp://127.0.0.1:1"},
                             lambda: {"counters": {"received": 7}})
    print("ready" if reg.wait_connected(10) else "not-connected", flush=True)
else:
    def changed(owned):
        print(json.dumps(sorted(owned)), flush=True)
    cluster.PartitionAssigner(s, a["bolt"], a["name"], a["partitions"], changed).start()
gevent.sleep(120)
"""


class Child:
    """A component in a child process; stdout lines are collected by a thread."""

    def __init__(self, **args: Any) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line.strip())

    def wait_line(self, want: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                gevent.sleep(0.02)  # yield to our own greenlets while the child works
                continue
            self.seen.append(line)
            if want(line):
                return line
        raise AssertionError(f"child printed {self.seen}, not the line wanted, within {timeout} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def children():
    made: list[Child] = []

    def spawn(**args: Any) -> Child:
        made.append(Child(**args))
        return made[-1]

    yield spawn
    for c in made:
        c.kill()


def wait_until(cond: Callable[[], Any], timeout: float, step: float = 0.05) -> float:
    """Seconds until cond() is truthy (greenlets run meanwhile); AssertionError after timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        gevent.sleep(step)
    return time.monotonic() - start


def names(settings) -> list[str]:
    return [n["name"] for n in list_nodes(settings)]


@pytest.mark.timeout(20)
def test_registration_fields_and_counter_updates(etcd_settings):
    counters = {"received": 0, "emitted": 0}
    t0 = time.time()
    reg = start_node(etcd_settings, "loginhour", "bolt", {"sub": "tcp://127.0.0.1:5001"},
                     lambda: {"health": {"state": "ok", "reason": ""}, "counters": dict(counters), "lag": 0})
    try:
        assert reg is not None and reg.wait_connected(5)
        latency = time.time() - t0
        [node] = list_nodes(etcd_settings)
        assert node["key"] == node_key(etcd_settings, socket.gethostname(), "loginhour")
        assert node["key"] == f"/analytics/{etcd_settings.cluster}/nodes/{socket.gethostname()}/loginhour"
        assert (node["name"], node["role"], node["host"], node["pid"]) == \
            ("loginhour", "bolt", socket.gethostname(), os.getpid())
        assert node["endpoints"] == {"sub": "tcp://127.0.0.1:5001"}
        assert node["health"] == {"state": "ok", "reason": ""}
        assert node["counters"] == {"received": 0, "emitted": 0}
        assert node["lag"] == 0
        assert t0 - 0.01 <= node["started"] <= node["updated"] <= time.time()
        assert 0 <= node["age"] < 5 and 0 <= node["updated_age"] < 5
        assert reg.connected and reg.registrations == 1
        assert latency < 2.0, latency
        print(f"\nregistered and visible {latency * 1000:.0f} ms after start_node")

        counters.update(received=42, emitted=40)
        first_update = node["updated"]
        took = wait_until(lambda: list_nodes(etcd_settings)[0]["counters"] == {"received": 42, "emitted": 40},
                          timeout=TTL + 1)
        assert took <= TTL / 3 + 1.0  # one rewrite interval, plus slack for a busy machine
        assert list_nodes(etcd_settings)[0]["updated"] > first_update
        # The value is rewritten while the lease is kept: still there after two TTLs.
        gevent.sleep(2 * TTL)
        assert names(etcd_settings) == ["loginhour"]
        assert reg.registrations == 1
    finally:
        reg.stop()
    assert list_nodes(etcd_settings) == [] and not reg.connected


@pytest.mark.timeout(30)
def test_killed_process_disappears_after_its_lease_ttl(etcd_settings, children):
    child = children(kind="node", etcd=etcd_settings.etcd, cluster=etcd_settings.cluster, ttl=TTL, name="crashy")
    assert child.wait_line(lambda line: line in ("ready", "not-connected"), 15) == "ready"
    [node] = list_nodes(etcd_settings)
    assert (node["name"], node["pid"], node["counters"]) == ("crashy", child.proc.pid, {"received": 7})
    child.kill()
    killed = time.monotonic()
    assert names(etcd_settings) == ["crashy"]  # no revoke on SIGKILL: the key lives until the lease expires
    wait_until(lambda: names(etcd_settings) == [], timeout=TTL + 3)
    gone_after = time.monotonic() - killed
    print(f"\nkilled node gone {gone_after:.2f} s after SIGKILL (TTL {TTL} s)")
    # The last keep-alive may have happened just before the kill: up to a full TTL, plus etcd's expiry tick.
    assert gone_after <= TTL + 1.5, gone_after


@pytest.mark.timeout(20)
def test_status_with_healthy_failing_and_missing(etcd_settings):
    ok = start_node(etcd_settings, "gamelog", "spout", {}, lambda: {"counters": {"emitted": 1000, "rejected": 2}})
    bad = start_node(etcd_settings, "server", "bolt", {},
                     lambda: {"health": {"state": "failing", "reason": "store unavailable"},
                              "counters": {"received": {"a": 600, "b": 400}, "emitted": 0, "lag": 12}})
    try:
        assert ok.wait_connected(5) and bad.wait_connected(5)
        nodes = list_nodes(etcd_settings)
        assert [(n["name"], n["role"], n["health"]["state"]) for n in nodes] == \
            [("gamelog", "spout", "ok"), ("server", "bolt", "failing")]
        text, code = render_status(nodes, expected=["gamelog", "server", "loginday"])
        assert code == EXIT_PROBLEM
        rows = [line.split() for line in text.splitlines()]
        host = socket.gethostname()
        assert rows[1] == ["gamelog", host, "spout", "ok", "-", "1000", "2", "-", "0s"] or \
            rows[1] == ["gamelog", host, "spout", "ok", "-", "1000", "2", "-", "1s"]
        assert rows[2][:8] == ["server", host, "bolt", "failing:", "store", "unavailable", "1000", "0"]
        assert rows[2][8:10] == ["-", "12"]  # rejected absent, lag 12
        assert rows[3] == ["loginday", "-", "-", "MISSING", "-", "-", "-", "-", "-"]
        assert text.splitlines()[-1] == "2 nodes: 1 ok, 0 degraded, 1 failing; missing: loginday"

        doc_text, code = status(etcd_settings, expected=["gamelog", "server", "loginday"], as_json=True)
        doc = json.loads(doc_text)
        assert code == EXIT_PROBLEM and doc["missing"] == ["loginday"] and doc["failing"] == ["server"]
        assert status(etcd_settings, expected=["gamelog"])[1] == EXIT_PROBLEM  # server is still failing
    finally:
        bad.stop()
    try:
        assert status(etcd_settings, expected=["gamelog"])[1] == 0
    finally:
        ok.stop()


@pytest.mark.timeout(20)
def test_discover_broker(etcd_settings):
    with pytest.raises(BrokerNotFound, match=f"no live broker registered under /analytics/{etcd_settings.cluster}/"):
        discover_broker(etcd_settings, timeout=0.3)
    endpoints = {"receiver": "tcp://10.0.0.5:5000", "sender": "tcp://10.0.0.5:5001"}
    # The broker comes up while we are already waiting for it.
    later = gevent.spawn_later(0.3, publish_broker, etcd_settings, endpoints)
    bolt = start_node(etcd_settings, "loginhour", "bolt", {"sub": "x"})
    try:
        t0 = time.monotonic()
        assert discover_broker(etcd_settings, timeout=5) == endpoints
        assert time.monotonic() - t0 < 3
    finally:
        bolt.stop()
        later.get(timeout=5).stop()
    with pytest.raises(ValueError, match="missing \\['sender'\\]"):
        publish_broker(etcd_settings, {"receiver": "tcp://x:1"})


@pytest.mark.timeout(40)
def test_partitions_split_then_move_to_the_survivor(etcd_settings, children):
    history: list[set[int]] = []
    a = PartitionAssigner(etcd_settings, "loginhour", "a", 6, history.append).start()
    try:
        assert a.wait_assigned(5) and a.connected
        assert history == [{0, 1, 2, 3, 4, 5}]
        b = children(kind="assigner", etcd=etcd_settings.etcd, cluster=etcd_settings.cluster, ttl=TTL,
                     bolt="loginhour", name="b", partitions=6)
        b.wait_line(lambda line: json.loads(line) == [1, 3, 5], 15)
        wait_until(lambda: a.owned == {0, 2, 4}, timeout=3)
        assert a.members == ["a", "b"]

        b.kill()
        killed = time.monotonic()
        handover = wait_until(lambda: a.owned == {0, 1, 2, 3, 4, 5}, timeout=TTL + a.poll_interval + 3)
        assert time.monotonic() - killed <= TTL + a.poll_interval + 1.5, handover
        print(f"\nsurvivor owns all partitions {handover:.2f} s after SIGKILL of the other instance")
        assert history == [{0, 1, 2, 3, 4, 5}, {0, 2, 4}, {0, 1, 2, 3, 4, 5}]
        assert a.members == ["a"]
    finally:
        a.stop()
    assert list_nodes(etcd_settings) == []  # members are not nodes
    # stop() deleted our member key: a fresh instance is alone.
    alone: list[set[int]] = []
    c = PartitionAssigner(etcd_settings, "loginhour", "c", 3, alone.append).start()
    try:
        assert c.wait_assigned(5) and alone == [{0, 1, 2}] and c.members == ["c"]
    finally:
        c.stop()


@pytest.mark.timeout(40)
def test_etcd_outage_disconnects_quietly_then_reregisters(etcd_private, etcd_private_settings, caplog):
    s = etcd_private_settings
    caplog.set_level(logging.INFO, logger="analytics.cluster")
    reg = start_node(s, "usercenter", "bolt", {}, lambda: {"counters": {"received": 1}})
    try:
        assert reg.wait_connected(5)
        old_lease = reg._lease.id

        etcd_private.stop()
        lost = wait_until(lambda: not reg.connected, timeout=TTL + 2)
        assert not reg._greenlet.dead and reg.last_error
        gevent.sleep(1.5)  # several failed retries: still one warning, nothing raised
        assert not reg.connected
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        with pytest.raises(cluster.ClusterUnavailable, match=f"etcd at {s.etcd} cannot be reached"):
            list_nodes(s)
        assert status(s)[1] == 2

        etcd_private.start()  # same data dir, same ports
        back = wait_until(lambda: reg.connected, timeout=8)
        assert reg.registrations == 2 and reg._lease.id != old_lease
        [node] = list_nodes(s)
        assert node["name"] == "usercenter" and node["counters"] == {"received": 1}
        assert any("is back" in r.getMessage() for r in caplog.records)
        print(f"\noutage noticed after {lost:.2f} s; re-registered {back:.2f} s after etcd was healthy")
        assert back < 4
    finally:
        reg.stop()
    assert list_nodes(s) == []
