"""Pure parts of analytics.cluster: partition assignment and the status report (no etcd)."""
from __future__ import annotations

import json

import pytest

from analytics.cluster import (EXIT_OK, EXIT_PROBLEM, EXIT_UNREACHABLE, ClusterUnavailable, PartitionAssigner,
                               _parse_endpoint, assign_partitions, discover_broker, lease_ttl, list_nodes,
                               node_key, partitions_for, render_status, start_node, status)
from analytics.config import ConfigError, Settings

pytestmark = pytest.mark.timeout(10)


# -- assignment -----------------------------------------------------------------------
@pytest.mark.parametrize("n_instances,partitions", [(1, 1), (1, 8), (2, 8), (3, 8), (3, 2), (5, 16), (4, 4)])
def test_every_partition_owned_exactly_once_and_balanced(n_instances, partitions):
    ids = [f"inst-{i}" for i in range(n_instances)]
    owners = assign_partitions(ids, partitions)
    assert set(owners) == set(ids)
    flat = sorted(p for owned in owners.values() for p in owned)
    assert flat == list(range(partitions))
    sizes = [len(owned) for owned in owners.values()]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == partitions


def test_assignment_is_deterministic_whatever_the_order():
    a = assign_partitions(["b", "c", "a"], 7)
    b = assign_partitions(["a", "b", "c", "a"], 7)
    assert a == b
    assert a == {"a": frozenset({0, 3, 6}), "b": frozenset({1, 4}), "c": frozenset({2, 5})}


def test_partitions_for_includes_the_asking_instance():
    assert partitions_for("b", ["a"], 4) == frozenset({1, 3})
    assert partitions_for("a", ["a"], 4) == frozenset({0, 1, 2, 3})
    assert partitions_for("x", [], 3) == frozenset({0, 1, 2})


def test_assignment_rejects_nonsense():
    with pytest.raises(ValueError, match="at least one instance"):
        assign_partitions([], 4)
    with pytest.raises(ValueError, match="partitions must be >= 1, not 0"):
        assign_partitions(["a"], 0)


def test_partition_assigner_without_etcd_owns_everything():
    seen = []
    pa = PartitionAssigner(Settings(etcd=""), "loginhour", "i1", 4, seen.append).start()
    assert seen == [{0, 1, 2, 3}]
    assert pa.owned == frozenset({0, 1, 2, 3}) and pa.connected is False
    pa.stop()


# -- settings edge --------------------------------------------------------------------
def test_no_etcd_means_no_registration_and_a_clear_status_error():
    s = Settings(etcd="")
    assert start_node(s, "loginhour", "bolt", {}, dict) is None
    with pytest.raises(ClusterUnavailable, match="no etcd configured"):
        list_nodes(s)
    with pytest.raises(ClusterUnavailable, match="no etcd configured"):
        discover_broker(s, timeout=0.1)
    text, code = status(s)
    assert code == EXIT_UNREACHABLE and "no etcd configured" in text and "\n" not in text


def test_endpoint_and_ttl_validation_shows_the_bad_value():
    assert _parse_endpoint("127.0.0.1:2379") == ("http", "127.0.0.1", 2379)
    assert _parse_endpoint("https://etcd.local:2379") == ("https", "etcd.local", 2379)
    with pytest.raises(ConfigError, match="'localhost'"):
        _parse_endpoint("localhost")
    with pytest.raises(ConfigError, match="lease_ttl must be .* not 1"):
        lease_ttl(Settings(extra={"cluster": {"lease_ttl": 1}}))
    assert lease_ttl(Settings()) == 10
    assert node_key(Settings(cluster="prod"), "h1", "loginhour") == "/analytics/prod/nodes/h1/loginhour"
    with pytest.raises(ValueError, match="'a/b'"):
        node_key(Settings(), "h1", "a/b")


def test_status_when_etcd_port_is_closed_is_exit_2():
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text, code = status(Settings(etcd=f"127.0.0.1:{port}"))
    assert code == EXIT_UNREACHABLE
    assert text.startswith(f"etcd at 127.0.0.1:{port} cannot be reached") and "\n" not in text


# -- render_status --------------------------------------------------------------------
def _node(name, host="h1", role="bolt", state="ok", reason="", counters=None, age=65.0):
    return {"name": name, "host": host, "role": role, "pid": 1, "endpoints": {},
            "health": {"state": state, "reason": reason}, "counters": counters or {},
            "age": age, "updated_age": 1.0}


def test_render_table_all_ok():
    nodes = [_node("gamelog", role="spout", counters={"emitted": 1200, "rejected": 3}, age=3725),
             _node("loginhour", counters={"received": {"gamelog.login": 700, "gamelog.signup": 500},
                                          "emitted": 40, "lag": 0.25}, age=12)]
    text, code = render_status(nodes, expected=["gamelog", "loginhour"])
    assert code == EXIT_OK
    lines = text.splitlines()
    assert lines[0].split() == ["NODE", "HOST", "ROLE", "HEALTH", "RECEIVED", "EMITTED", "REJECTED", "LAG", "AGE"]
    assert lines[1].split() == ["gamelog", "h1", "spout", "ok", "-", "1200", "3", "-", "1h"]
    assert lines[2].split() == ["loginhour", "h1", "bolt", "ok", "1200", "40", "-", "0.2", "12s"]
    assert lines[3] == "2 nodes: 2 ok, 0 degraded, 0 failing"


def test_render_table_failing_and_missing_give_exit_1():
    nodes = [_node("broker", role="broker", counters={"received": 10, "emitted": 10}),
             _node("server", state="failing", reason="store unavailable")]
    text, code = render_status(nodes, expected=["broker", "server", "loginday"])
    assert code == EXIT_PROBLEM
    lines = text.splitlines()
    assert "failing: store unavailable" in lines[2]
    assert lines[3].split() == ["loginday", "-", "-", "MISSING", "-", "-", "-", "-", "-"]
    assert lines[4] == "2 nodes: 1 ok, 0 degraded, 1 failing; missing: loginday"


def test_degraded_alone_is_exit_0_and_missing_alone_is_exit_1():
    assert render_status([_node("a", state="degraded", reason="slow")])[1] == EXIT_OK
    assert render_status([_node("a")], expected=["b"])[1] == EXIT_PROBLEM
    text, code = render_status([], expected=None)
    assert code == EXIT_OK and text.splitlines()[-1] == "0 nodes: 0 ok, 0 degraded, 0 failing"


def test_render_json():
    nodes = [_node("a"), _node("b", state="failing", reason="x")]
    text, code = render_status(nodes, expected=["a", "c"], as_json=True)
    doc = json.loads(text)
    assert code == EXIT_PROBLEM
    assert doc["ok"] is False and doc["missing"] == ["c"] and doc["failing"] == ["b"]
    assert [n["name"] for n in doc["nodes"]] == ["a", "b"]
    assert json.loads(render_status([_node("a")], as_json=True)[0])["ok"] is True
