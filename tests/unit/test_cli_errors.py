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


def run_cli(*args: str, cwd=None, timeout: float = 60):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ANALYTICS_CONFIG": "", "ANALYTICS_DEBUG": "", "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "analytics.cli", *args], cwd=cwd or root, capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_line(err: str) -> bool:
    """One error line and no traceback (INFO lines aside, should ANALYTICS_LOG_LEVEL ask for them)."""
    lines = [line for line in err.splitlines() if " INFO " not in line]
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize("command", ["query", "serve"])
def test_read_commands_never_create_a_store(tmp_path, command):
    args = ["query", "loginday"] if command == "query" else ["serve", "--port", "0"]
    out = run_cli(*args, "--store", "sqlite:///dat/demo.db", cwd=tmp_path)
    assert out.returncode == 3 and one_line(out.stderr) and "no store at dat/demo.db" in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []  # no database, no directory


@pytest.mark.parametrize("url, code, words", [
    ("foo://x", 2, "unknown store URL 'foo://x'"),
    ("sqlite:///notdb.txt", 3, "is not a SQLite database"),
    ("sqlite:///notdb.txt/x.db", 3, "notdb.txt is a file, not a directory"),
])
@pytest.mark.parametrize("command", [["query", "loginday"], ["replay", "--game", "dl", "in.txt"]])
def test_bad_stores_are_one_line_with_the_documented_code(tmp_path, monkeypatch, capsys, url, code, words, command):
    from analytics.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANALYTICS_CONFIG", "")
    (tmp_path / "notdb.txt").write_text("hello\n")
    (tmp_path / "in.txt").write_text("{}\n")
    assert main([*command, "--store", url]) == code
    err = capsys.readouterr().err
    assert one_line(err) and words in err, err


def test_serve_on_a_port_in_use_is_one_line_exit_2(tmp_path):
    import socket

    from analytics.store import open_store
    open_store(f"sqlite:///{tmp_path}/s.db").close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli("serve", "--store", f"sqlite:///{tmp_path}/s.db", "--port", str(port))
    assert out.returncode == 2 and one_line(out.stderr) and f"cannot listen on 127.0.0.1:{port}" in out.stderr


def test_a_bad_flag_shows_the_subcommands_usage(capsys):
    from analytics.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["query", "loginday", "--limt", "3"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "usage: analytics query" in err and "unrecognized arguments: --limt 3" in err


def test_config_is_taken_after_the_subcommand_too(tmp_path, monkeypatch):
    from analytics.cli import _settings, parse_args
    monkeypatch.setenv("ANALYTICS_CONFIG", "")
    cfg = tmp_path / "a.toml"
    cfg.write_text('[analytics]\ncluster = "after"\n')
    assert _settings(parse_args(["status", "--config", str(cfg)])).cluster == "after"
    assert _settings(parse_args(["--config", str(cfg), "status"])).cluster == "after"
