"""The CLI's error line (analytics.cli.brief): the cause, one line, bounded."""
from __future__ import annotations

import pytest

from analytics.cli import ERROR_WIDTH, brief

pytestmark = pytest.mark.timeout(10)

PYMONGO = ("mongodb setup: 127.0.0.1:1: [Errno 111] Connection refused (configured timeouts: socketTimeoutMS: "
           "20000.0ms, connectTimeoutMS: 20000.0ms), Timeout: 0.5s, Topology Description: <TopologyDescription "
           "id: 6b13, topology_type: Unknown, servers: [<ServerDescription ('127.0.0.1', 1) server_type: Unknown, "
           "rtt: None, error=AutoReconnect('127.0.0.1:1: [Errno 111] Connection refused')>]>")


def test_a_drivers_diagnostics_are_left_out():
    assert brief(PYMONGO) == "mongodb setup: 127.0.0.1:1: [Errno 111] Connection refused"


def test_long_or_multi_line_messages_become_one_bounded_line():
    line = brief("first line\nsecond " + "x" * 1000)
    assert "\n" not in line and len(line) == ERROR_WIDTH and line.endswith("…")
    assert brief("short (kept: a remark in brackets)") == "short (kept: a remark in brackets)"


def test_status_with_etcd_expects_what_start_runs_here(tmp_path, monkeypatch):
    """A process that died leaves the etcd view with its lease: its pid file still says it should be there."""
    import analytics.cluster
    from analytics.cli import main
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[analytics]\netcd = "127.0.0.1:1"\nrun_dir = "{tmp_path}/run"\n'
                   '[service]\ncomponents = ["loginhour", "loginday"]\n')
    (tmp_path / "run").mkdir()
    for name in ("broker", "loginhour"):
        (tmp_path / "run" / f"{name}.pid").write_text("1\n")
    seen = {}

    def fake_status(settings, expected=None, as_json=False):
        seen["expected"] = expected
        return "text", 0
    monkeypatch.setattr(analytics.cluster, "status", fake_status)
    assert main(["--config", str(cfg), "status"]) == 0
    assert seen["expected"] == ["broker", "loginhour"]
    assert main(["--config", str(cfg), "status", "--expect", "x,y"]) == 0 and seen["expected"] == ["x", "y"]
