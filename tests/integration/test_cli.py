"""The CLI as an operator uses it: demo, replay, query, run + read_stdin_gamelog, one-line errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics.processes import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "gamelog_dl_sample.txt"


def cli(*args: str, env: dict | None = None, input: bytes | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "analytics.cli", *args], cwd=ROOT, capture_output=True,
                          input=input, timeout=timeout, env={**os.environ, **(env or {})})


def expected_login_days(lines: list[str], tz: str = "Asia/Shanghai") -> dict[tuple[str, int], int]:
    """Distinct login users per (plat, local day), computed here from the raw lines."""
    from datetime import datetime
    from zoneinfo import ZoneInfo
    days: dict[tuple[str, int], set] = {}
    for line in lines:
        try:
            r = json.loads(line)
            if r["op"]["code"] != "login_logcount":
                continue
            d = datetime.fromtimestamp(r["ts"], ZoneInfo(tz)).replace(hour=0, minute=0, second=0)
            days.setdefault((str(r["data"]["corpid"]), int(d.timestamp())), set()).add(str(r["data"]["acct"]))
        except (ValueError, KeyError, TypeError):
            continue
    return {k: len(v) for k, v in days.items()}


def malformed(lines: list[str]) -> int:
    """Lines a gamelog spout must reject: not a JSON object, or lacking a field it needs."""
    bad = 0
    for line in lines:
        try:
            r = json.loads(line)
            ok = (isinstance(r["op"]["code"], str) and isinstance(r["area"], (str, int)) and type(r["ts"]) is int
                  and r["data"]["acct"] not in (None, "") and r["data"]["corpid"] not in (None, ""))
        except (ValueError, KeyError, TypeError):
            ok = False
        bad += not ok
    return bad


def test_demo_prints_the_summary_and_leaves_a_store(tmp_path):
    out = cli("demo", "--store", f"sqlite:///{tmp_path}/demo.db", env={"ANALYTICS_CONFIG": ""})
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert "== dl (days in Asia/Shanghai) ==" in text and "== wsdx (days in America/New_York) ==" in text
    assert "8 rejected" in text and "PROBLEM" not in text
    import re
    for block in text.split("\n== ")[1:]:  # D1 retention of each game's last day is not known yet: '-', not 0.0%
        rows = [line.split() for line in block.splitlines() if re.match(r"  \d{4}-\d\d-\d\d ", line)]
        last = max(r[0] for r in rows)
        assert all(r[-1] == "-" for r in rows if r[0] == last), block
        assert any(r[-1].endswith("%") for r in rows if r[0] < last), block


def test_replay_then_query_gives_the_exact_figures_and_a_replay_changes_nothing(tmp_path):
    store = f"sqlite:///{tmp_path}/s.db"
    first = cli("replay", "--game", "dl", "--json", "--store", store, str(SAMPLE))
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    report = json.loads(first.stdout)
    assert report["problems"] == []
    assert report["totals"]["rejected"] == malformed(SAMPLE.read_text().splitlines()) > 0
    ops = report["store_ops"]  # None unless the store counts its operations (store.op_counts)
    assert report["store_writes_per_1000_records"] == (
        None if ops is None else round(ops["writes"] * 1000 / report["totals"]["read"], 2))
    q = cli("query", "loginday", "--game", "dl", "--json", "--store", store)
    got = {(d["plat"], d["ts"]): d["count"] for d in map(json.loads, q.stdout.decode().splitlines())}
    assert got == expected_login_days(SAMPLE.read_text().splitlines())
    again = cli("replay", "--game", "dl", "--json", "--store", store, str(SAMPLE))
    assert again.returncode == 0
    q2 = cli("query", "loginday", "--game", "dl", "--json", "--store", store)
    assert q2.stdout == q.stdout


def test_errors_are_one_line_with_meaningful_exit_codes(tmp_path):
    bad = cli("query", "loginday", "--game", "$ne", "--store", f"sqlite:///{tmp_path}/x.db")
    assert bad.returncode == 2 and bad.stderr.decode().strip().count("\n") == 0
    assert "may not start with '$'" in bad.stderr.decode()
    missing = cli("replay", "--game", "dl", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "no such file" in missing.stderr.decode()
    unnamed = tmp_path / "game.log"  # a name that records no game
    unnamed.write_bytes(SAMPLE.read_bytes())
    nogame = cli("replay", "--source", "gamelog", str(unnamed), env={"ANALYTICS_CONFIG": ""})
    assert nogame.returncode == 2 and "--game" in nogame.stderr.decode()


def test_a_reader_that_goes_away_ends_the_query_quietly(tmp_path):
    """`analytics query loginhour --json | head -1`: no BrokenPipeError traceback, the SIGPIPE status."""
    from analytics.store import open_store
    from analytics.store.base import Batch
    url = f"sqlite:///{tmp_path}/many.db"
    with open_store(url) as store:
        batch = Batch()
        for h in range(3000):  # ~300 KB of output: more than a pipe holds, so the writer is blocked on it
            batch.upsert("loginhour", {"game": "dl", "area": "a1", "plat": "2001", "ts": 1420560000 + 3600 * h},
                         set={"count": h, "type": "login"})
        store.apply(batch)
    proc = subprocess.Popen([sys.executable, "-m", "analytics.cli", "query", "loginhour", "--json", "--store", url],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its line
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert json.loads(first)["ts"] == 1420560000
    assert err == "" and code in (0, 128 + signal.SIGPIPE, -signal.SIGPIPE)


def test_an_unreachable_mongodb_is_one_line_naming_host_and_cause():
    port = free_port()   # free a moment ago: nothing listens there, the connection is refused
    url = f"mongodb://127.0.0.1:{port}/x?serverSelectionTimeoutMS=300"
    out = cli("query", "loginhour", "--store", url, env={"ANALYTICS_DEBUG": ""})
    err = out.stderr.decode()
    assert out.returncode == 3 and err.count("\n") == 1, err
    line = err.strip()
    assert len(line) < 240 and f"127.0.0.1:{port}" in line and "Connection refused" in line, line
    assert "Topology Description" not in line and "Traceback" not in line
    debug = cli("query", "loginhour", "--store", url, env={"ANALYTICS_DEBUG": "1"})
    assert debug.returncode != 0 and "Topology Description" in debug.stderr.decode()


def test_read_stdin_gamelog_feeds_a_running_topology_and_fails_clearly_without_one(tmp_path):
    rx, tx = free_port(), free_port()
    cfg = tmp_path / "a.toml"
    cfg.write_text(f"""
[analytics]
store = "sqlite:///{tmp_path}/a.db"
data_dir = "{tmp_path}/data"
run_dir = "{tmp_path}/run"
[broker]
receiver = "tcp://127.0.0.1:{rx}"
sender = "tcp://127.0.0.1:{tx}"
[http]
port = 0
[games.dl]
tz = "Asia/Shanghai"
[sources.gamelog]
game = "dl"
files = ["{tmp_path}/in/*.log"]
[sources.payment]
files = ["{tmp_path}/in/pay*.json"]
[sources.syncuser]
files = ["{tmp_path}/in/user*.json"]
""")
    feeder = [str(ROOT / "bin" / "read_stdin_gamelog"), "--config", str(cfg), "--game", "dl"]
    lines = SAMPLE.read_text().splitlines()[:600]
    none = subprocess.run(feeder + ["--connect-timeout", "1"], input=b"{}\n", capture_output=True, timeout=30)
    assert none.returncode == 3 and "no broker is listening" in none.stderr.decode()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "game.log").write_text("\n".join(lines[:300]) + "\n")
    run = subprocess.Popen([sys.executable, "-m", "analytics.cli", "--config", str(cfg), "--log-level", "WARNING", "run"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        fed = subprocess.run(feeder, input=("\n".join(lines[300:]) + "\n").encode(), capture_output=True, timeout=60)
        assert fed.returncode == 0, fed.stderr.decode()
        want = expected_login_days(lines)
        deadline = time.monotonic() + 30
        while True:
            q = cli("--config", str(cfg), "query", "loginday", "--game", "dl", "--json")
            got = {(d["plat"], d["ts"]): d["count"] for d in map(json.loads, q.stdout.decode().splitlines())}
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert got == want
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 0


def readme_commands(prefix: str) -> list[str]:
    """The README's shell lines that start with `prefix` (comments cut off)."""
    import re
    text = (ROOT / "README.md").read_text()
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S)
             for line in block.splitlines()]
    return [line for line in lines if line.startswith(prefix)]


def test_the_readmes_replay_of_the_samples_is_right_as_written(tmp_path):
    """Each game's players are counted as that game's, and every game of the samples has its actives."""
    import shlex
    import tomllib
    commands = [c for c in readme_commands("analytics replay") if " data/" in c]
    assert commands, "the README shows no replay of the samples"
    store = f"sqlite:///{tmp_path}/r.db"
    for command in commands:
        out = cli(*shlex.split(command)[1:], "--store", store, "--no-progress", env={"ANALYTICS_CONFIG": ""})
        assert out.returncode == 0, (command, out.stderr.decode()[-2000:])
    games = set(tomllib.loads((ROOT / "data" / "samples.toml").read_text())["games"])
    for game in games:
        q = cli("query", "loginday", "--game", game, "--json", "--store", store)
        got = {(d["plat"], d["ts"]): d["count"] for d in map(json.loads, q.stdout.decode().splitlines())}
        lines = (ROOT / "data" / f"gamelog_{game}_sample.txt").read_text().splitlines()
        tz = tomllib.loads((ROOT / "data" / "samples.toml").read_text())["games"][game]["tz"]
        assert got == expected_login_days(lines, tz), game


@pytest.mark.parametrize("with_good_file", [False, True])
def test_a_file_of_another_source_warns_names_the_likely_source_and_exits_1(tmp_path, with_good_file):
    wrong = tmp_path / "pay.txt"  # payment records given as gamelog
    wrong.write_bytes((ROOT / "data" / "payment_sample.txt").read_bytes())
    files = [str(wrong)] + ([str(SAMPLE)] if with_good_file else [])
    out = cli("replay", "--no-progress", "--source", "gamelog", "--game", "dl", "--store",
              f"sqlite:///{tmp_path}/s.db", *files, env={"ANALYTICS_CONFIG": ""})
    warnings = [line for line in out.stderr.decode().splitlines() if line.startswith("warning:")]
    assert out.returncode == 1, out.stderr.decode()
    assert len(warnings) == 1 and str(wrong) in warnings[0] and "--source payment" in warnings[0], warnings


def test_run_says_what_it_serves_and_where_and_logs_at_info(tmp_path):
    import re
    import urllib.request
    rx, tx = free_port(), free_port()
    (tmp_path / "in").mkdir()
    cfg = tmp_path / "a.toml"
    cfg.write_text(f"""
[analytics]
data_dir = "{tmp_path}/var"
[broker]
receiver = "tcp://127.0.0.1:{rx}"
sender = "tcp://127.0.0.1:{tx}"
[http]
port = 0
[sources.gamelog]
game = "dl"
files = ["{tmp_path}/in/*.log"]
[sources.payment]
files = ["{tmp_path}/in/pay*.json"]
[sources.syncuser]
files = ["{tmp_path}/in/user*.json"]
""")
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as f:
        run = subprocess.Popen([sys.executable, "-m", "analytics.cli", "run", "--config", str(cfg)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=f, env={**os.environ, "ANALYTICS_LOG_LEVEL": ""})
    try:
        deadline = time.monotonic() + 60
        while "SIGTERM" not in err.read_text() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        text = err.read_text()
        said = [line for line in text.splitlines() if line.startswith("analytics run: ")]
        assert any(f"{tmp_path}/in/*.log" in line for line in said), text
        assert any(f"tcp://127.0.0.1:{rx}" in line for line in said), text
        url = re.search(r"dashboard on (http://127\.0\.0\.1:\d+)/", text)
        assert url, text
        with urllib.request.urlopen(url.group(1) + "/api/v1/games", timeout=10) as r:
            assert r.status == 200
        assert " INFO " in text and "topology running" in text  # the documented level
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 0
