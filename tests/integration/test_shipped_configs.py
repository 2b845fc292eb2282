"""Every configuration the project ships loads, and starts with `analytics start` (its
host-specific values made local: tests/support/configs.py): one host, the three hosts of
the three-host layout together, and the README's Configure example."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics.config import load_settings
from analytics.processes import free_port
from analytics.service import plan
from tests.support.configs import REPO, dump_toml, load, localize, readme_config, shipped_configs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]
SAMPLE = REPO / "data" / "gamelog_dl_sample.txt"


def cli(cfg: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ANALYTICS_CONFIG": ""}
    return subprocess.run([sys.executable, "-m", "analytics.cli", *args, "--config", str(cfg)], cwd=cfg.parent,
                          capture_output=True, text=True, timeout=timeout, env=env)


def ports() -> dict[str, int]:
    return {k: free_port() for k in ("receiver", "sender", "http", "source")}


def write(tmp: Path, name: str, config: dict) -> Path:
    path = tmp / name
    path.write_text(dump_toml(config))
    return path


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_configuration_loads_as_it_is(path):
    settings = load_settings(path, env={})
    if path.parent.name != "data":
        assert plan(settings)


def test_the_readmes_configuration_loads_as_it_is(tmp_path):
    cfg = tmp_path / "readme.toml"
    cfg.write_text(readme_config())
    assert plan(load_settings(cfg, env={}))


def start_all(configs: list[Path]) -> None:
    for cfg in configs:
        out = cli(cfg, "start")
        assert out.returncode == 0, f"{cfg.name}:\n{out.stdout}\n{out.stderr}"
        assert "FAILED" not in out.stdout and "NOT READY" not in out.stdout


def stop_all(configs: list[Path]) -> None:
    for cfg in reversed(configs):
        cli(cfg, "stop", "--timeout", "20")


def logins_stored(cfg: Path, want: int, timeout: float = 60) -> int:
    """Wait until the loginday documents of game dl count `want` users in all; the count seen."""
    deadline = time.monotonic() + timeout
    while True:
        q = cli(cfg, "query", "loginday", "--game", "dl", "--json")
        got = sum(d["count"] for d in map(json.loads, q.stdout.splitlines())) if q.returncode == 0 else -1
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def expected_logins() -> int:
    from tests.integration.test_cli import expected_login_days
    return sum(expected_login_days(SAMPLE.read_text().splitlines()).values())


def test_one_host_starts_and_counts_what_it_reads(tmp_path):
    config = localize(load(REPO / "deploy/config/one-host.toml"), tmp_path, ports())
    cfg = write(tmp_path, "one-host.toml", config)
    (tmp_path / "in").mkdir()
    try:
        start_all([cfg])
        (tmp_path / "in" / "gamelog1.log").write_text(SAMPLE.read_text())
        assert logins_stored(cfg, expected_logins()) == expected_logins()
    finally:
        stop_all([cfg])


@pytest.mark.slow
def test_the_three_host_layout_starts_on_one_machine(tmp_path):
    p = ports()
    configs = []
    for name in ("broker", "bolts", "spouts"):
        config = localize(load(REPO / "deploy/config/three-host" / f"{name}.toml"), tmp_path, p)
        configs.append(write(tmp_path, f"{name}.toml", config))
    (tmp_path / "in").mkdir()
    try:
        start_all(configs)
        (tmp_path / "in" / "gamelog1.log").write_text(SAMPLE.read_text())
        assert logins_stored(configs[1], expected_logins()) == expected_logins()
        # The hosts talk CURVE (the shipped configs set curve_keys; localize wrote the keys).
        assert "CURVE on, 2 public keys (*.key) allowed" in (tmp_path / "var" / "run" / "broker.log").read_text()
    finally:
        stop_all(configs)


@pytest.mark.slow
def test_the_readmes_configuration_starts(tmp_path):
    config = localize(load(readme_config()), tmp_path, ports())
    cfg = write(tmp_path, "readme.toml", config)
    try:
        start_all([cfg])
    finally:
        stop_all([cfg])
