"""Cluster drills (issue 6): the multi-process topology under `analytics start` with a real etcd
(the `etcd_private` fixture, lease TTL 2 s) and data flowing.

1. A partitioned bolt instance (loginhour#1 of 2, 4 partitions) is SIGKILLed mid-stream: the
   survivor takes its partitions within about TTL + poll and processes their tuples; after
   completion and the operator's replay of the disk logs every collection equals an undisturbed
   replay of the same input.
2. etcd is stopped mid-stream and started again: the data path keeps working (figures keep
   growing, no process exits), `analytics status` exits 2 with one line meanwhile, every node
   registers again within a few seconds, and every collection equals an undisturbed run.

The helpers (config under tmp_path, free ports, completion signal, replay, store dump) are
tests/support/drill.py, shared with test_fault_drill.py.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import time
from pathlib import Path

import pytest

from analytics.cluster import list_nodes
from analytics.tuples import partition_of
from tests.support.drill import (GAME, SPOUTS, cli, dump_store, feed, ok, pid_of, replay_all, sample,
                                 undisturbed, wait_complete, write_config)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
LOGIN_TOPIC = "gamelog.login_logcount"


def _cluster_config(root: Path, etcd, indir: Path, extra: str, pack_users: bool = True) -> Path:
    sources = {s: {"files": [f"{indir}/{s}_*.txt"], "follow": True, "rescan_seconds": 0.2} for s in SPOUTS}
    sources["gamelog"]["game"] = GAME
    sources["gamelog"]["pack_users"] = pack_users
    analytics = (f'etcd = "{etcd.endpoint}"\ncluster = "drill{os.getpid()}x{time.monotonic_ns() % 10**6}"\n'
                 f"partitions = {PARTITIONS}\n")
    return write_config(root / "analytics.toml", root, sources=sources, analytics=analytics,
                        extra="[http]\nport = 0\n[cluster]\nlease_ttl = 2\n" + extra)


def _settings(cfg: Path):
    from analytics.config import load_settings
    return load_settings(cfg, env={})


def _process_names(cfg: Path) -> list[str]:
    from analytics.service import plan
    return [p.name for p in plan(_settings(cfg))]


def _members(settings, bolt: str) -> list[str]:
    """Live instance ids of `bolt`, read from its members keys in etcd."""
    from analytics.cluster import _client, members_prefix
    prefix = members_prefix(settings, bolt)
    client = _client(settings, 3.0)
    try:
        return sorted(meta["key"].decode()[len(prefix):] for _, meta in client.get_prefix(prefix.encode()))
    finally:
        client.session.close()


def _node(settings, name: str) -> dict | None:
    return next((n for n in list_nodes(settings) if n.get("name") == name), None)


def _received(node: dict | None, topic: str = LOGIN_TOPIC) -> int:
    return int(((node or {}).get("counters") or {}).get("received", {}).get(topic, 0))


def _owned_lines(log: Path) -> list[str]:
    try:
        return [ln for ln in log.read_text().splitlines() if "owns partitions [" in ln]
    except FileNotFoundError:
        return []


def _wait(what: str, predicate, timeout: float, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def _login_partitions(lines: list[str]) -> list[int]:
    """The partition of every login record in gamelog `lines` (what the spout would publish)."""
    out = []
    for ln in lines:
        try:
            obj = json.loads(ln)
        except ValueError:
            continue
        if (isinstance(obj, dict) and isinstance(obj.get("op"), dict) and obj["op"].get("code") == "login_logcount"
                and isinstance(obj.get("ts"), int) and isinstance(obj.get("area"), str)):
            out.append(partition_of(GAME, obj["area"], PARTITIONS))
    return out


def _alive(cfg: Path) -> dict[str, bool]:
    rows = [ln.split() for ln in cli(cfg, "status", "--local").stdout.splitlines()[1:-1]]
    return {r[0]: r[3] == "yes" for r in rows}


@pytest.mark.timeout(150)
def test_partition_hand_over_when_a_bolt_instance_dies(tmp_path, etcd_private):
    t0 = time.monotonic()
    live = tmp_path / "live"
    indir = live / "in"
    indir.mkdir(parents=True)
    inputs = sample(tmp_path / "staging", users=150, areas=4)
    parts = _login_partitions(inputs["gamelog"])
    assert len(set(parts)) == PARTITIONS, f"the sample must spread over every partition: {sorted(set(parts))}"
    # One tuple per login (no packing), so that the survivor's received counter counts logins.
    cfg = _cluster_config(live, etcd_private, indir,
                          "[components.loginhour]\ninstances = 2\n[components.loginday]\ninstances = 2\n",
                          pack_users=False)
    settings = _settings(cfg)
    logs = {i: live / "run" / f"loginhour#{i}.log" for i in (0, 1)}
    ok(cli(cfg, "start"))
    try:
        # Both instances are members and split the partitions: #0 takes [0, 2], #1 takes [1, 3].
        _wait("loginhour#0 and #1 to split the partitions",
              lambda: _members(settings, "loginhour") == ["0", "1"]
              and "owns partitions [0, 2]" in (_owned_lines(logs[0]) or [""])[-1]
              and "owns partitions [1, 3]" in (_owned_lines(logs[1]) or [""])[-1], 30)

        half = 0.5
        feed(indir, inputs, 0, half)
        # Mid-stream: loginhour#1 has received tuples of its partitions (etcd counters, every TTL/3).
        _wait("loginhour#1 to receive logins", lambda: _received(_node(settings, "loginhour#1")) > 0, 30)
        os.kill(pid_of(live, "loginhour#1"), signal.SIGKILL)
        killed_at = time.monotonic()
        # Within about TTL + poll the dead member's key is gone and the survivor owns everything.
        _wait("loginhour#1's members key to expire", lambda: _members(settings, "loginhour") == ["0"], 10, 0.1)
        _wait("loginhour#0 to own every partition",
              lambda: "owns partitions [0, 1, 2, 3]" in (_owned_lines(logs[0]) or [""])[-1], 10, 0.1)
        hand_over = time.monotonic() - killed_at
        assert hand_over < 2 + 1 + 2, f"hand-over took {hand_over:.1f} s (TTL 2 s, poll 1 s)"
        # Its node key has a lease of its own (taken a moment later): gone within a TTL too.
        _wait("loginhour#1's node key to expire",
              lambda: "loginhour#1" not in {n["name"] for n in list_nodes(settings)}, 2 + 1, 0.1)

        # Let the first half settle in loginhour#0 (its counter stops moving), then feed the rest:
        # from now on every login reaches loginhour#0 only.
        state = {"value": -1, "since": time.monotonic()}

        def settled() -> bool:
            value = _received(_node(settings, "loginhour#0"))
            if value != state["value"]:
                state.update(value=value, since=time.monotonic())
            return time.monotonic() - state["since"] > 2.5
        _wait("loginhour#0's counter to settle", settled, 30, 0.3)
        before = state["value"]
        feed(indir, inputs, half, 1)
        bolts = wait_complete(cfg, live, indir)
        assert "loginhour#0" in bolts and "loginhour#1" not in bolts, bolts
        drained = [ln for ln in logs[0].read_text().splitlines() if "loginhour drained: received " in ln][-1]
        total = ast.literal_eval(drained.split("drained: received ", 1)[1])[LOGIN_TOPIC]
        stopped = ok(cli(cfg, "stop"))
        assert "KILLED" not in stopped, stopped
    finally:
        cli(cfg, "stop")

    # The survivor processed tuples of the partitions it took over: after the hand-over it received
    # more logins than the second half holds in its own partitions [0, 2].
    rest = _login_partitions(inputs["gamelog"][int(len(inputs["gamelog"]) * half):])
    own_rest = sum(1 for p in rest if p in (0, 2))
    taken_rest = sum(1 for p in rest if p in (1, 3))
    after = total - before
    print(f"loginhour#0 received {before} logins before the hand-over and {after} after; the second half has "
          f"{own_rest} in its partitions [0, 2] and {taken_rest} in the taken-over [1, 3]")
    assert taken_rest > 0 and after > own_rest, (after, own_rest, taken_rest)
    assert after == own_rest + taken_rest, (after, own_rest, taken_rest)  # every login of the second half

    # After a crash, replay the disk logs (docs/operations.md), then compare with an undisturbed run.
    before_replay = dump_store(cfg)
    replay_all(cfg, [str(live / "data" / f"{s}_*.txt") for s in SPOUTS])
    drill = dump_store(cfg)
    expected = undisturbed(tmp_path / "base", inputs)
    stored = sum(len(v) for v in expected.values())
    same_live = sum(before_replay[c] == expected[c] for c in expected)
    print(f"hand-over drill: {sum(len(v) for v in inputs.values())} input lines, killed loginhour#1, hand-over "
          f"{hand_over:.2f} s, {len(expected)} collections, {stored} documents; before the replay {same_live} "
          f"matched; {time.monotonic() - t0:.0f} s")
    assert stored > 100 and expected["loginhour"], expected
    differ = [c for c in expected if drill[c] != expected[c]]
    assert not differ, {c: (len(drill[c]), len(expected[c]), sorted(set(drill[c]) ^ set(expected[c]))[:4])
                        for c in differ}


@pytest.mark.timeout(150)
def test_etcd_outage_mid_stream_keeps_the_data_path_and_nodes_register_again(tmp_path, etcd_private):
    t0 = time.monotonic()
    live = tmp_path / "live"
    indir = live / "in"
    indir.mkdir(parents=True)
    inputs = sample(tmp_path / "staging", users=150, areas=4)
    cfg = _cluster_config(live, etcd_private, indir, "[components.loginhour]\ninstances = 2\n")
    settings = _settings(cfg)
    names = _process_names(cfg)
    expect = ",".join(names)
    ok(cli(cfg, "start"))
    try:
        _wait("every process to register", lambda: cli(cfg, "status", "--expect", expect).returncode == 0, 30)
        pids = {n: pid_of(live, n) for n in names}
        feed(indir, inputs, 0, 0.3)
        _wait("figures in the store", lambda: len(dump_store(cfg)["loginhour"]) > 0, 30, 0.5)

        etcd_private.stop()
        stopped_at = time.time()
        status = cli(cfg, "status")
        assert status.returncode == 2, status
        line = status.stdout.strip()
        assert "\n" not in line and f"etcd at {etcd_private.endpoint} cannot be reached" in line, status.stdout

        # The data path does not need etcd: feed more, the figures keep growing, nobody exits.
        figures = sum(len(v) for v in dump_store(cfg).values())
        feed(indir, inputs, 0.3, 0.7)
        grown = _wait("figures to keep growing without etcd",
                      lambda: (n := sum(len(v) for v in dump_store(cfg).values())) > figures and n, 30, 0.5)
        time.sleep(max(0.0, stopped_at + 2 * 2 - time.time()))  # an outage longer than two lease TTLs
        assert cli(cfg, "status").returncode == 2
        alive = _alive(cfg)
        assert all(alive.get(n) for n in names), alive
        assert {n: pid_of(live, n) for n in names} == pids

        etcd_private.start()
        up_wall, up = time.time(), time.monotonic()
        # Every node writes its key again under a new lease (etcd restores old keys with their
        # leases on restart, so "present" is not enough: each must be rewritten after the restart).

        def registered_again() -> bool:
            nodes = {n["name"]: n for n in list_nodes(settings)}
            return set(names) <= set(nodes) and all(nodes[n]["updated"] > up_wall for n in names)
        _wait("every node to register again", registered_again, 15, 0.1)
        reregistered = time.monotonic() - up
        status = cli(cfg, "status", "--expect", expect)
        assert status.returncode == 0, status.stdout + status.stderr
        assert all(any(row.split()[:1] == [n] for row in status.stdout.splitlines()) for n in names), status.stdout
        assert reregistered < 5, f"registered again after {reregistered:.1f} s"
        assert _members(settings, "loginhour") == ["0", "1"]
        back = sum(1 for n in names if "is back" in (live / "run" / f"{n}.log").read_text())
        assert back == len(names), f"{back} of {len(names)} logged 'is back'"

        feed(indir, inputs, 0.7, 1)
        bolts = wait_complete(cfg, live, indir)  # stops the spouts, waits until every bolt drained
        out = ok(cli(cfg, "stop"))
        assert "KILLED" not in out, out
        assert all(f"{n}: stopped" in out for n in bolts + ["broker"]), out  # nobody exited on its own
    finally:
        cli(cfg, "stop")

    drill = dump_store(cfg)
    expected = undisturbed(tmp_path / "base", inputs)
    stored = sum(len(v) for v in expected.values())
    print(f"etcd drill: {sum(len(v) for v in inputs.values())} input lines, {len(names)} processes, figures "
          f"{figures} -> {grown} documents during the outage, registered again {reregistered:.2f} s after etcd "
          f"was back; {len(expected)} collections, {stored} documents; {time.monotonic() - t0:.0f} s")
    assert stored > 100 and expected["loginhour"], expected
    # No process died, so the live path alone must be exact (no replay needed).
    differ = [c for c in expected if drill[c] != expected[c]]
    assert not differ, {c: (len(drill[c]), len(expected[c]), sorted(set(drill[c]) ^ set(expected[c]))[:4])
                        for c in differ}
