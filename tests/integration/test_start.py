"""`analytics start` tells the truth: it waits for every process to be ready or dead, names each
failure with the last line of its log, and refuses to start without a configuration."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANALYTICS_CONFIG": "", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "analytics.cli", *args], cwd=cwd, capture_output=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("command", ["start", "run"])
def test_without_a_configuration_start_and_run_refuse_in_one_line(tmp_path, command):
    out = cli(command, cwd=tmp_path)
    err = out.stderr.decode()
    assert out.returncode == 2 and err.count("\n") == 1 and "--config" in err, err
    assert not (tmp_path / "var").exists()  # nothing started, nothing created


def test_start_waits_for_every_process_and_names_each_one_that_died(tmp_path):
    rx, tx = free_port(), free_port()
    (tmp_path / "in").mkdir()
    cfg = tmp_path / "a.toml"
    cfg.write_text(f"""
[analytics]
data_dir = "{tmp_path}/var"
run_dir = "{tmp_path}/var/run"
[broker]
receiver = "tcp://127.0.0.1:{rx}"
sender = "tcp://127.0.0.1:{tx}"
[service]
components = ["loginhour", "gamelog", "payment", "syncuser"]
expect = ["loginhour"]
[sources.gamelog]
game = "dl"
files = ["{tmp_path}/in/*.log"]
[sources.payment]
http = "http://127.0.0.1:{free_port()}/payments"
[sources.syncuser]
""")
    try:
        out = cli("start", "--config", str(cfg))
        text = out.stdout.decode()
        assert out.returncode == 1, text + out.stderr.decode()
        lines = {line.split(":")[0]: line for line in text.splitlines() if ":" in line}
        assert "needs option 'game'" in lines["payment"] and "FAILED" in lines["payment"], text
        assert "give exactly one source" in lines["syncuser"] and "FAILED" in lines["syncuser"], text
        for name in ("broker", "loginhour", "gamelog"):
            assert "started" in lines[name] and "ready" in lines[name], text
        assert text.strip().endswith("failed: payment, syncuser"), text
    finally:
        assert cli("stop", "--config", str(cfg), "--timeout", "20").returncode == 0
