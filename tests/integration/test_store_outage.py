"""A store outage during a run, on a real server: SecantusDB (MongoDB wire protocol) stopped and started.

The topology keeps running while the server is down: the bolt retries its flush with
backoff and stops reading, so what it holds stays within one flush (`flush_every`) plus
the broker's high-water marks, and the spout is slowed by backpressure, not dropped.
When the server is back, the bolt flushes and the run catches up: every event stored once.
"""
from __future__ import annotations

import gevent
import pytest

from analytics.config import load_settings
from analytics.runners import LocalRunner
from analytics.store import open_store
from analytics.testing import wait_until
from analytics.topology import ComponentSpec, Topology
from analytics.transport import SharedSubscriber
from tests.mongo_server import SecantusServer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

TOYS = "tests.support.toys"
COUNT = 9000
FLUSH_EVERY = 500


def test_a_database_outage_buffers_within_its_bound_backpressures_and_catches_up(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.broker.hwm = 4
    settings.broker.batch_size = 50
    topo = Topology([ComponentSpec("src", f"{TOYS}:ListSpout", {"count": COUNT, "per_call": 10}),
                     ComponentSpec("storesum", f"{TOYS}:StoreSumBolt",
                                   {"flush_every": FLUSH_EVERY, "flush_seconds": 0.1})])
    with SecantusServer() as server:
        store = open_store(server.url + "outage?serverSelectionTimeoutMS=300")
        runner = LocalRunner(topo, settings, store=store).start()
        try:
            spout, bolt = runner.components["src"], runner.components["storesum"]
            assert wait_until(lambda: bolt.counters.flushes >= 2, 30), "no flush before the outage"
            server.stop()                                     # the database goes away mid-run
            assert wait_until(lambda: bolt.health["state"] == "degraded", 10), "not degraded by the outage"
            gevent.sleep(2.0)
            emitted = sum(spout.counters.emitted.values())
            received = sum(bolt.counters.received.values())
            gevent.sleep(1.5)
            # backpressure: the spout is held, nothing more reaches the bolt, nothing is dropped
            assert sum(spout.counters.emitted.values()) == emitted < COUNT
            assert sum(bolt.counters.received.values()) == received
            # the bolt holds at most one flush's tuples and one read batch beyond it
            bolt_held = bolt._pending
            assert bolt_held <= FLUSH_EVERY + settings.broker.batch_size
            held = emitted - sum(bolt.counters.received.values())
            # in flight: each side of the two inproc hops (spout -> receiver, sender -> bolt) holds at most
            # hwm frames of batch_size tuples, plus the frame the broker holds and the spout's open batch,
            # plus the process's shared subscription: the bolt's inbox (min(hwm, inbox_frames) frames)
            # and the frame its receive loop holds while that inbox is full
            inbox = min(settings.broker.hwm, SharedSubscriber.inbox_frames) + 1
            assert held <= (4 * settings.broker.hwm + 2 + inbox) * settings.broker.batch_size, held
            server.start()                                    # same data, same port
            report = runner.wait_drained(90)
        finally:
            runner.stop()
        assert report.problems(topo) == []
        assert report.bolts["storesum"]["store_retries"] > 0
        assert report.broker["blocked_seconds"] > 1.0          # the broker waited on the full bolt
        assert bolt.health["state"] == "ok"
        docs = sorted((d["area"], d["n"], d["distinct"]) for d in store.find("toysum"))
        store.close()
    third = COUNT // 3
    assert docs == [("a0", third, third), ("a1", third, third), ("a2", third, third)]
    print(f"outage: spout held at {emitted} of {COUNT} emitted, {held} in flight, bolt holding {bolt_held}")
