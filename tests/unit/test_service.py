"""`analytics start|stop|status` planning, pid files and the deploy/ files (no processes started)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from analytics.cli import _files_by_source
from analytics.config import ConfigError, load_settings
from analytics.service import is_running, local_status, plan, read_pid, stop

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "deploy" / "config").rglob("*.toml"))


def test_there_are_example_configs():
    assert {p.relative_to(REPO / "deploy" / "config").as_posix() for p in CONFIGS} == {
        "one-host.toml", "three-host/broker.toml", "three-host/spouts.toml", "three-host/bolts.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs_load_and_plan(path):
    settings = load_settings(path, env={})
    names = [p.name for p in plan(settings)]
    assert names, path
    if path.name == "broker.toml":
        assert names == ["broker"]
    elif path.name == "spouts.toml":
        assert names == ["gamelog", "payment", "syncuser", "http"] and settings.extra["cluster"]["discover"]
    elif path.name == "bolts.toml":
        assert "broker" not in names and "loginhour#0" in names and "loginhour#1" in names
        assert "gamelog" not in names and settings.partitions == 8
    else:
        assert names[0] == "broker" and {"gamelog", "loginday", "paytraceday"} <= set(names)


def test_the_three_host_layout_runs_every_registered_component_exactly_once():
    """A component the registry adds runs on one host of the layout, never silently on none or on two."""
    from analytics.topology import DEFAULT_COMPONENTS
    hosts: dict[str, list[str]] = {}
    for path in sorted((REPO / "deploy" / "config" / "three-host").glob("*.toml")):
        for name in {p.name.split("#")[0] for p in plan(load_settings(path, env={}))}:
            hosts.setdefault(name, []).append(path.name)
    wanted = ["broker"] + [name for name, _ in DEFAULT_COMPONENTS]
    assert {n: hosts.get(n, []) for n in wanted if len(hosts.get(n, [])) != 1} == {}, "not on exactly one host"
    assert set(hosts) == set(wanted)


def test_service_roles_select_components_by_role(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[service]\nbroker = false\nroles = ["spout"]\ncomponents = ["loginday"]\n')
    assert [p.name for p in plan(load_settings(cfg, env={}))] == ["loginday", "gamelog", "payment", "syncuser",
                                                                    "http"]
    cfg.write_text('[service]\nroles = ["bolts"]\n')
    with pytest.raises(ConfigError, match="roles must be a list of 'bolt', 'spout'"):
        plan(load_settings(cfg, env={}))


def test_every_setting_in_the_examples_is_commented():
    for path in CONFIGS:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "=" in line and not line.lstrip().startswith(("#", "[")) and not line.startswith(" "):
                above = lines[i - 1].strip()
                assert above.startswith("#") or "=" in above, f"{path.name}:{i + 1} {line!r} has no comment"


def test_plan_orders_broker_bolts_spouts_and_narrows(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[components.loginhour]\ninstances = 2\n[sources.gamelog]\ngame = "g"\nfiles = ["x"]\n')
    settings = load_settings(cfg, env={})
    procs = plan(settings)
    roles = [p.role for p in procs]
    assert roles[0] == "broker" and roles.index("spout") > max(i for i, r in enumerate(roles) if r == "bolt")
    assert [p.name for p in plan(settings, ["loginhour"])] == ["loginhour#0", "loginhour#1"]
    assert plan(settings, ["loginhour#1"])[0].args == ("component", "loginhour", "--instance", "1")
    with pytest.raises(ConfigError, match="not run on this host: nosuch"):
        plan(settings, ["nosuch"])
    cfg.write_text("[components.gamelog]\ninstances = 2\n")
    with pytest.raises(ConfigError, match="only bolts"):
        plan(load_settings(cfg, env={}))


def test_stale_pid_files_are_not_running_and_stop_removes_them(tmp_path):
    settings = load_settings(env={}, run_dir=str(tmp_path / "run"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "broker.pid").write_text(f"{os.getpid()}\n")  # alive, but not an analytics process
    (run / "loginday.pid").write_text("999999999\n")
    assert read_pid(run / "broker.pid") == os.getpid() and not is_running(os.getpid())
    text, code = local_status(settings, ["broker", "loginday"])
    assert code == 1 and "0 of 2 running" in text
    out = []

    class Out:
        def write(self, s):
            out.append(s)
    assert stop(settings, ["broker", "loginday"], timeout=1, out=Out()) == 0
    assert not list(run.glob("*.pid")) and "stale pid file removed" in "".join(out)


def test_replay_files_are_grouped_by_the_source_in_their_name():
    files = ["data/gamelog_202501071200.txt", "data/payment_1.txt", "/x/syncuser_2.txt", "other.json"]
    assert _files_by_source(files, None) == {"gamelog": [files[0], files[3]], "payment": [files[1]],
                                             "syncuser": [files[2]]}
    assert _files_by_source(files, "payment") == {"payment": files}


def test_deploy_dry_run_prints_the_plan_and_touches_nothing(tmp_path):
    prefix = tmp_path / "opt"
    r = subprocess.run(["sh", str(REPO / "deploy" / "deploy.sh"), "--dry-run", "--prefix", str(prefix),
                        "--config", str(REPO / "deploy" / "config" / "one-host.toml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for want in ("-m venv", f"{prefix}/venv/bin/pip install --quiet --upgrade {REPO}",
                 "/etc/init.d/analytics", "/etc/systemd/system/analytics.service", f"mkdir -p {prefix}",
                 f"{prefix}/analytics.toml"):
        assert want in r.stdout, (want, r.stdout)
    assert not prefix.exists()
    bad = subprocess.run(["sh", str(REPO / "deploy" / "deploy.sh"), "--dry-run", "--prefix", "relative"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "absolute" in bad.stderr


def test_init_script_and_unit_are_well_formed():
    init = REPO / "deploy" / "analytics.init"
    assert subprocess.run(["sh", "-n", str(init)]).returncode == 0
    text = init.read_text()
    assert "### BEGIN INIT INFO" in text and "Provides:          analytics" in text
    for action in ("start)", "stop)", "restart|force-reload)", "status)"):
        assert action in text
    unit = (REPO / "deploy" / "analytics.service").read_text()
    for want in ("Type=forking", "KillSignal=SIGTERM", "TimeoutStopSec=", "ExecStop=", "ExecStart="):
        assert want in unit
