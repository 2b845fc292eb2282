"""The runtime end to end in one process: broker, spouts and bolts as greenlets over inproc."""
from __future__ import annotations

import gevent
import pytest

from analytics.config import load_settings
from analytics.store import open_store
from analytics.testing import wait_until
from analytics.runners import LocalRunner
from analytics.topology import ComponentSpec, Topology, TopologyError

TOYS = "tests.support.toys"


def spec(name: str, cls: str, **options) -> ComponentSpec:
    return ComponentSpec(name, f"{TOYS}:{cls}", options)


@pytest.fixture
def settings(tmp_path):
    s = load_settings(env={}, data_dir=str(tmp_path / "data"))
    s.broker.hwm = 10
    s.broker.batch_size = 50
    return s


def run(topology, settings, store=None, timeout=30):
    runner = LocalRunner(topology, settings, store=store).start()
    try:
        report = runner.wait_drained(timeout)
    finally:
        runner.stop()
    return runner, report


def test_every_spout_tuple_reaches_every_subscribed_bolt(settings):
    topo = Topology([spec("src", "ListSpout", count=2000), spec("collect", "CollectBolt"),
                     spec("onlya", "OnlyABolt"), spec("derived", "DerivedBolt")])
    runner, report = run(topo, settings)
    assert report.problems(topo) == []
    assert report.spouts["src"]["sent"] == {"toy.a": 1000, "toy.b": 1000}
    assert len(runner.components["collect"].seen) == 2000
    assert len(set(runner.components["collect"].seen)) == 2000
    assert len(runner.components["onlya"].seen) == 1000
    assert sorted(runner.components["derived"].seen) == sorted("d" + i for i in runner.components["collect"].seen)
    assert report.bolts["derived"]["received_from"] == {"collect|toy.derived": 2000}
    assert report.broker["unrouted"] == {}


def test_a_hook_error_is_dead_lettered_and_the_bolt_carries_on(settings, tmp_path):
    topo = Topology([spec("src", "ListSpout", count=300), spec("collect", "CollectBolt", fail_on=7),
                     spec("derived", "DerivedBolt")])
    runner, report = run(topo, settings)
    collect = runner.components["collect"]
    assert len(collect.seen) == 299 and "id7" not in collect.seen
    assert report.bolts["collect"]["errors"] == 1
    dead = (tmp_path / "data" / "deadletter" / "collect.jsonl").read_text()
    assert "bad n 7" in dead and '"n":7' in dead


def test_a_slow_bolt_slows_the_spout_and_loses_nothing(settings):
    settings.broker.hwm = 2
    settings.broker.batch_size = 10
    topo = Topology([spec("src", "ListSpout", count=400, per_call=400), spec("collect", "CollectBolt", delay=0.002),
                     spec("derived", "DerivedBolt")])
    runner, report = run(topo, settings)
    assert report.problems(topo) == []
    assert len(runner.components["collect"].seen) == 400
    assert report.broker["blocked_seconds"] > 0  # the broker waited on the full subscriber


def test_a_subscriber_that_starts_late_loses_nothing(settings):
    topo = Topology([spec("src", "ListSpout", count=500), spec("collect", "CollectBolt"), spec("derived", "DerivedBolt")])
    runner = LocalRunner(topo, settings)
    real_spawn = runner._spawn

    def late_spawn(name):
        if name == "derived":
            gevent.spawn_later(0.5, real_spawn, name)  # subscribes after the spout has started
        else:
            real_spawn(name)
    runner._spawn = late_spawn
    runner.start()
    try:
        gevent.sleep(0.2)
        assert runner.components["src"].counters.emitted == {} or runner.broker.frames_out == 0
        report = runner.wait_drained(30)
    finally:
        runner.stop()
    assert report.problems(topo) == []
    assert len(runner.components["derived"].seen) == 500


def test_store_bolt_dedupes_by_record_id_across_runs(settings, tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.setup()
    topo = Topology([spec("src", "ListSpout", count=600), spec("storesum", "StoreSumBolt")])
    run(topo, settings, store=store)
    first = {d["area"]: (d["n"], d["distinct"]) for d in store.find("toysum")}
    _, report = run(topo, settings, store=store)  # the same records again: a replay
    second = {d["area"]: (d["n"], d["distinct"]) for d in store.find("toysum")}
    assert first == second == {"a0": (200, 200), "a1": (200, 200), "a2": (200, 200)}
    assert report.bolts["storesum"]["deduplicated"] == 600
    store.close()


def test_wiring_is_validated():
    with pytest.raises(TopologyError, match="at least one spout"):
        Topology([spec("collect", "CollectBolt")])
    with pytest.raises(TopologyError, match="duplicate component name"):
        Topology([spec("src", "ListSpout"), spec("src", "ListSpout")])
    with pytest.raises(TopologyError, match="no component emits"):
        Topology([spec("src", "ListSpout"), spec("derived2", "DerivedBolt")])


def test_worker_groups_follow_the_stages_of_the_flow():
    from analytics.topology import stages, worker_groups
    topo = Topology([spec("src", "ListSpout"), spec("collect", "CollectBolt"), spec("onlya", "OnlyABolt"),
                     spec("derived", "DerivedBolt"), spec("storesum", "StoreSumBolt")])
    assert stages(topo) == {"src": 0, "collect": 1, "onlya": 1, "derived": 2, "storesum": 1}
    assert worker_groups(topo, 1) == [["src", "collect", "onlya", "derived", "storesum"]]
    assert worker_groups(topo, 2) == [["src"], ["collect", "onlya", "derived", "storesum"]]
    assert worker_groups(topo, 3) == [["src"], ["collect", "onlya", "storesum"], ["derived"]]
    assert worker_groups(topo, 8) == worker_groups(topo, 3)  # no empty workers
    with pytest.raises(ValueError, match="workers must be >= 1"):
        worker_groups(topo, 0)


def test_worker_groups_of_the_default_topology_put_the_sources_first():
    from analytics.topology import default_topology, worker_groups
    first, second, rest = worker_groups(default_topology(load_settings(env={})), 3)
    assert set(first) == {"gamelog", "payment", "syncuser", "http"}
    assert {"loginhour", "signuphour", "payorderuser", "serverstarttime"} <= set(second)
    assert {"loginday", "activeday", "loginretention", "server"} <= set(rest)


class FlakyStore:
    """A real store whose writes fail as unavailable for the first `outage` seconds (a restarting database)."""

    def __init__(self, store, outage: float):
        import time
        self.store, self.until, self.failures = store, time.monotonic() + outage, 0

    def apply(self, batch):
        import time

        from analytics.store import StoreUnavailable
        if time.monotonic() < self.until:
            self.failures += 1
            raise StoreUnavailable("database is restarting")
        return self.store.apply(batch)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_store_outage_is_retried_slows_the_spout_and_loses_nothing(settings, tmp_path):
    settings.broker.hwm = 2
    settings.broker.batch_size = 20
    real = open_store(f"sqlite:///{tmp_path}/s.db")
    flaky = FlakyStore(real, outage=1.5)
    topo = Topology([spec("src", "ListSpout", count=3000, per_call=3000),
                     spec("storesum", "StoreSumBolt", flush_every=100, flush_seconds=0.1)])
    runner, report = run(topo, settings, store=flaky)
    assert flaky.failures >= 3  # retried with backoff, not once
    assert report.bolts["storesum"]["store_retries"] == flaky.failures
    assert report.problems(topo) == []
    assert report.broker["blocked_seconds"] > 0  # the bolt stopped reading: the broker (and the spout) waited
    assert sorted((d["area"], d["n"], d["distinct"]) for d in real.find("toysum")) == [
        ("a0", 1000, 1000), ("a1", 1000, 1000), ("a2", 1000, 1000)]
    assert runner.components["storesum"].health["state"] == "ok"  # recovered
    real.close()


class BrokenStore(FlakyStore):
    """A store with a bug: apply raises something that is not a StoreError."""

    def apply(self, batch):
        raise KeyError("ObjectId('...')")


def test_a_component_that_dies_fails_the_run_at_once(settings, tmp_path):
    import time
    real = open_store(f"sqlite:///{tmp_path}/s.db")
    topo = Topology([spec("src", "ListSpout", count=300), spec("storesum", "StoreSumBolt")])
    runner = LocalRunner(topo, settings, store=BrokenStore(real, 0)).start()
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="component died: storesum: KeyError"):
            runner.wait_drained(60)
    finally:
        runner.stop(timeout=5)
    assert time.monotonic() - started < 20
    real.close()


def test_the_bolts_of_a_process_decode_each_frame_once(settings, monkeypatch):
    import analytics.component
    calls: list[str] = []
    real = analytics.component.decode_batch

    def counting(topic, payload):
        calls.append(topic)
        return real(topic, payload)
    monkeypatch.setattr(analytics.component, "decode_batch", counting)
    topo = Topology([spec("src", "ListSpout", count=2000), spec("collect", "CollectBolt"),
                     spec("onlya", "OnlyABolt"), spec("derived", "DerivedBolt")])
    runner, report = run(topo, settings)
    assert report.problems(topo) == []
    assert len(runner.components["onlya"].seen) == 1000 and len(runner.components["collect"].seen) == 2000
    # toy.a reaches collect and onlya, but each of its frames is decoded once.
    frames = runner.components["src"].publisher.frames + runner.components["collect"].publisher.frames
    assert len(calls) == frames
    assert runner.subscriptions.frames >= frames


def test_a_shared_subscription_routes_frames_by_topic_and_partition(settings):
    from analytics.broker import Broker
    from analytics.transport import Publisher, SharedSubscriber, new_context, subscription_prefixes
    zctx = new_context()
    broker = Broker(zctx, "inproc://r", "inproc://s", expected=["all", "p1"]).start()
    hub = SharedSubscriber(zctx, "inproc://s")
    everything = hub.subscribe("all", ["toy.a", "toy.b"])
    only_p1 = hub.subscribe("p1", ["toy.a"], partitions={1})
    pub = Publisher(zctx, "inproc://r", "src", batch_size=1)
    try:
        assert broker.wait_ready(5)

        def sent(partition: int, topic: str = "toy.a") -> None:
            pub.send(topic, f"id{partition}", 1420688004, {"n": partition}, partition)

        def got(inbox) -> list[tuple[str, str, str]]:
            out = []
            msg = inbox.recv(1)
            while msg is not None:
                out.append((msg.kind.decode(), msg.topic, msg.partition))
                msg = inbox.recv(0.2)
            return out
        for p in (0, 1, 2):
            sent(p)
        sent(1, "toy.b")
        pub.barrier(["toy.a"])
        assert got(only_p1) == [("D", "toy.a", "001"), ("B", "toy.a", "*")]
        assert got(everything) == [("D", "toy.a", "000"), ("D", "toy.a", "001"), ("D", "toy.a", "002"),
                                   ("D", "toy.b", "001"), ("B", "toy.a", "*")]
        only_p1.set_partitions({2})
        # the new subscription (and the end of the old one) reaches the broker
        p1, p2 = (set(subscription_prefixes("toy.a", {p})) - {b"toy.a\x00*"} for p in (1, 2))
        assert wait_until(lambda: p2 <= broker.subscriptions.keys() and not p1 & broker.subscriptions.keys(), 5)
        for p in (1, 2):
            sent(p)
        assert got(only_p1) == [("D", "toy.a", "002")]
        assert len(got(everything)) == 2
        only_p1.close()
        assert wait_until(lambda: broker.missing() == {"p1"}, 5)  # its readiness marker went with it
    finally:
        pub.close(linger_ms=0)
        hub.close()
        broker.stop()
        zctx.term()


class CountingStore:
    """A store that counts its operations (as stores with `op_counts` do), delegating the rest."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.op_counts = {"reads": 0, "writes": 0}

    def apply(self, batch):
        self.op_counts["writes"] += 1
        return self.inner.apply(batch)

    def unseen(self, *args):
        self.op_counts["reads"] += 1
        return self.inner.unseen(*args)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_the_drain_report_counts_each_stores_operations_once(settings, tmp_path):
    store = CountingStore(open_store(f"sqlite:///{tmp_path}/s.db"))
    store.setup()
    topo = Topology([spec("src", "ListSpout", count=600), spec("storesum", "StoreSumBolt"),
                     spec("storesum2", "StoreSumBolt")])
    _, report = run(topo, settings, store=store)
    assert report.problems(topo) == []
    assert store.op_counts["writes"] >= 2 and store.op_counts["reads"] >= 2
    # Both bolts report the store they share; the run's figure takes it once.
    assert report.store_ops() == store.op_counts
    assert sum(r["store_ops"]["writes"] for r in report.bolts.values()) > store.op_counts["writes"]
    store.inner.close()


class UncountedStore:
    """A store of another make that keeps no operation counters."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name == "op_counts":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_store_without_operation_counters_reports_none(settings, tmp_path):
    inner = open_store(f"sqlite:///{tmp_path}/s.db")
    store = UncountedStore(inner)
    _, report = run(Topology([spec("src", "ListSpout", count=100), spec("storesum", "StoreSumBolt")]), settings,
                    store=store)
    assert report.bolts["storesum"]["store_ops"] is None and report.store_ops() is None
    inner.close()


def test_a_replay_of_some_sources_keeps_every_bolt_one_of_them_feeds():
    """Bolts fed by several sources run on the part present (they read the rest from the store)."""
    from analytics.topology import default_topology
    full = default_topology(load_settings(env={}))

    def bolts_fed_by(*sources):
        return set(full.with_spouts([ComponentSpec(f"replay_{s}", full.specs[s].cls) for s in sources]).bolts)
    gamelog, payment, syncuser = bolts_fed_by("gamelog"), bolts_fed_by("payment"), bolts_fed_by("syncuser")
    assert {"server", "usercenter", "userlevel", "loginretention", "activeday"} <= gamelog
    assert "payorderuser" not in gamelog and "paytraceday" not in gamelog
    assert payment == {"payorderuser", "server", "paytraceday", "cohortltv", "funnelday"}
    assert syncuser == {"usercenter", "userlevel"}
    assert bolts_fed_by("gamelog", "payment", "syncuser") == set(full.bolts)
    # every bolt waits only for the producers this replay has
    part = full.with_spouts([ComponentSpec("replay_payment", full.specs["payment"].cls)])
    assert part.expected_barriers("server") == {("payorderuser", "payorderuser.day")}


def test_a_partial_topology_needs_one_fed_topic_per_bolt():
    topo = Topology([spec("src", "ListSpout"), spec("onlya", "OnlyABolt")], partial=True)
    assert topo.bolts == ["onlya"]
    with pytest.raises(TopologyError, match="none of its topics"):
        Topology([spec("src", "ListSpout"), spec("derived2", "DerivedBolt")], partial=True)
    from analytics.topology import default_topology
    only = default_topology(load_settings(env={}), ["gamelog", "loginhour", "loginday", "server"])
    assert only.expected_barriers("server") == {("loginday", "login.day")}


def test_a_replay_flushes_its_bolts_less_often_unless_configured():
    """A replay is a backfill: its bolts take REPLAY_FLUSH, a [components.X] setting still wins,
    and the bolt reads it as its own option (the live topology keeps the classes' defaults)."""
    from analytics.app import REPLAY_FLUSH, replay_settings
    from analytics.component import Context
    from analytics.topology import default_topology
    from bolts.login import LoginHourBolt
    settings = load_settings(env={})
    settings.components["loginday"] = {"flush_every": 7}
    topo = default_topology(settings)
    replayed = replay_settings(settings, topo)
    assert replayed.component("loginhour") == REPLAY_FLUSH
    assert replayed.component("loginday") == {**REPLAY_FLUSH, "flush_every": 7}
    assert "gamelog" not in replayed.components          # spouts keep theirs
    assert settings.component("loginhour") == {}         # the caller's settings are not changed
    bolt = LoginHourBolt(Context(settings=replayed, zmq=None, receiver="inproc://r", sender="inproc://s"))
    assert (bolt.flush_every, bolt.flush_seconds) == (REPLAY_FLUSH["flush_every"], REPLAY_FLUSH["flush_seconds"])
    live = LoginHourBolt(Context(settings=settings, zmq=None, receiver="inproc://r", sender="inproc://s"))
    assert (live.flush_every, live.flush_seconds) == (LoginHourBolt.flush_every, LoginHourBolt.flush_seconds)
