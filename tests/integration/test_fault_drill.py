"""Fault drill: the multi-process topology under `analytics start`, killed -9 piece by piece
mid-stream, restarted, then the disk logs replayed the way docs/operations.md tells an
operator. Every stored collection must equal an undisturbed replay of the same input.

Also: SIGTERM of a running bolt process flushes what it holds and exits 0. And with etcd: the
started processes register, and two instances of a bolt split the partitions.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from analytics.service import is_running
from analytics.testing import wait_until
from tests.support.drill import (GAME, SPOUTS, cli, dump_store, ok, pid_of,  # shared with test_cluster_drill
                                 replay_all, sample, undisturbed, wait_complete, write_config)

pytestmark = pytest.mark.integration


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fault_drill_kill_restart_replay_equals_an_undisturbed_run(tmp_path):
    staging, live = tmp_path / "staging", tmp_path / "live"
    inputs = sample(staging, users=250)
    total = sum(len(v) for v in inputs.values())
    indir = live / "in"
    indir.mkdir(parents=True)
    sources = {s: {"files": [f"{indir}/{s}_*.txt"], "follow": True, "rescan_seconds": 0.2} for s in SPOUTS}
    sources["gamelog"]["game"] = GAME
    cfg = write_config(live / "analytics.toml", live, sources=sources, extra="[http]\nport = 0\n")

    ok(cli(cfg, "start"))
    try:
        # Feed the input in four slices; between slices kill -9 one kind of process and restart it.
        kills = ["broker", "gamelog", "loginhour", None]
        killed = []
        for i, victim in enumerate(kills):
            for source, lines in inputs.items():
                part = lines[len(lines) * i // 4: len(lines) * (i + 1) // 4]
                with open(indir / f"{source}_feed.txt", "a") as fh:
                    fh.writelines(part)
            time.sleep(1.5)  # mid-stream: the spouts are reading and the bolts holding unflushed state
            if victim:
                pid = pid_of(live, victim)
                os.kill(pid, signal.SIGKILL)
                killed.append(victim)
                assert wait_until(lambda: not is_running(pid), 10), f"{victim} outlived SIGKILL"
                out = ok(cli(cfg, "start"))
                assert f"{victim}: started" in out and "already running" in out, out
        status = cli(cfg, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        # Completion: every input byte read (saved offsets), then every bolt drained.
        wait_complete(cfg, live, indir)
        stopped = ok(cli(cfg, "stop"))
        assert "KILLED" not in stopped, stopped
    finally:
        cli(cfg, "stop")  # whatever happened above: leave no process behind

    before_replay = dump_store(cfg)
    # After a crash: replay the disk logs (idempotent: what was counted is not counted again).
    replay_all(cfg, [str(live / "data" / f"{s}_*.txt") for s in SPOUTS])
    drill = dump_store(cfg)
    # The undisturbed run: a plain replay of the same input into a fresh store.
    expected = undisturbed(tmp_path / "base", inputs)

    stored = sum(len(v) for v in expected.values())
    print(f"fault drill: {total} input lines, killed {killed}, {len(expected)} collections, {stored} documents")
    same_live = sum(before_replay[c] == expected[c] for c in expected)
    print(f"before the replay {same_live} of {len(expected)} collections already matched")
    assert stored > 100, expected
    differ = [c for c in expected if drill[c] != expected[c]]
    assert not differ, {c: (len(drill[c]), len(expected[c]), sorted(set(drill[c]) ^ set(expected[c]))[:4])
                        for c in differ}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_of_a_bolt_process_flushes_what_it_holds(tmp_path):
    inputs = sample(tmp_path / "staging", users=40, days=1)
    indir = tmp_path / "in"
    indir.mkdir()
    (indir / "gamelog_feed.txt").write_text("".join(inputs["gamelog"]))
    # The bolt never flushes on its own: only SIGTERM can put its figures in the store. Checkpoints
    # are off (they make a bolt flush at every barrier), so the spout saves offsets as it reads.
    extra = ('[service]\ncomponents = ["gamelog", "loginhour"]\nexpect = ["loginhour"]\n'
             "[components.loginhour]\nflush_every = 1000000\nflush_seconds = 3600\n")
    cfg = write_config(tmp_path / "analytics.toml", tmp_path,
                       sources={"gamelog": {"files": [f"{indir}/gamelog_*.txt"], "game": GAME,
                                            "checkpoints": False}}, extra=extra)
    ok(cli(cfg, "start"))
    try:
        deadline = time.monotonic() + 30
        state = tmp_path / "data" / "spoolstate" / "gamelog.json"
        size = (indir / "gamelog_feed.txt").stat().st_size
        while time.monotonic() < deadline:
            ok(cli(cfg, "status"))
            if state.exists() and sum(f["offset"] for f in json.loads(state.read_text())["files"].values()) == size:
                break
            time.sleep(0.3)
        time.sleep(1.0)  # delivered through the broker
        assert dump_store(cfg)["loginhour"] == [], "flushed before SIGTERM: the test proves nothing"
        pid = pid_of(tmp_path, "loginhour")
        out = ok(cli(cfg, "stop", "loginhour"))
        assert f"loginhour: stopped (pid {pid}" in out, out
        assert "loginhour stopped, exit 0" in (tmp_path / "run" / "loginhour.log").read_text()
        got = dump_store(cfg)["loginhour"]
    finally:
        cli(cfg, "stop")
    base = tmp_path / "base"
    base_cfg = write_config(tmp_path / "base.toml", base)
    ok(cli(base_cfg, "replay", "--source", "gamelog", "--game", GAME, "--no-progress", str(indir / "gamelog_feed.txt")))
    assert got and got == dump_store(base_cfg)["loginhour"]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_started_processes_register_in_etcd_and_split_partitions(tmp_path, etcd_settings):
    from analytics.cluster import list_nodes
    extra = ('[service]\ncomponents = ["loginhour"]\nexpect = ["loginhour"]\n'
             "[components.loginhour]\ninstances = 2\n"
             '[cluster]\nlease_ttl = 2\ndiscover = true\n')
    cfg = write_config(tmp_path / "analytics.toml", tmp_path, extra=extra)
    text = cfg.read_text().replace("[analytics]\n", f'[analytics]\netcd = "{etcd_settings.etcd}"\n'
                                   f'cluster = "{etcd_settings.cluster}"\npartitions = 4\n', 1)
    cfg.write_text(text)
    ok(cli(cfg, "start"))
    try:
        from analytics.config import load_settings
        settings = load_settings(cfg, env={})
        deadline, names = time.monotonic() + 30, set()
        while time.monotonic() < deadline:
            names = {n["name"] for n in list_nodes(settings)}
            owned = [([ln for ln in (tmp_path / "run" / f"loginhour#{i}.log").read_text().splitlines()
                       if "owns partitions [" in ln] or [""])[-1] for i in (0, 1)]
            last = " ".join(owned)  # each instance's latest assignment
            if names == {"broker", "loginhour#0", "loginhour#1"} and "[0, 2]" in last and "[1, 3]" in last:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"nodes {names}; assignments {owned}")
        status = cli(cfg, "status", "--expect", "broker,loginhour#0,loginhour#1")
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        ok(cli(cfg, "stop"))
