"""`analytics run` in a subprocess over a given store: the whole default topology, the HTTP intake and the
stats API + dashboard on a free port of 127.0.0.1, the tcp broker bound on free ports, and empty (followed)
log files as the other sources. The browser test and bench/bench_live.py drive it.

    with LiveSite(tmp, "sqlite:////tmp/x.db", zones={"dl": "Asia/Shanghai"}) as site:
        requests.post(site.url + "/api/v1/event/save", json=[...])
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import requests

__all__ = ["LiveSite", "free_port"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveSite:
    """The running topology; `url` is its intake + API + dashboard."""

    def __init__(self, tmp: Path, store: str, *, zones: Mapping[str, str], game: str = "dl",
                 components: Mapping[str, Mapping[str, Any]] | None = None, http: Mapping[str, Any] | None = None,
                 ) -> None:
        self.tmp, self.store, self.zones, self.game = Path(tmp), store, dict(zones), game
        self.components = {k: dict(v) for k, v in (components or {}).items()}
        self.http = dict(http or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        logs = self.tmp / "live-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in ("gamelog", "payment", "syncuser"):
            (logs / f"{name}.txt").touch()
        lines = ["[analytics]", f'store = "{self.store}"', f'data_dir = "{self.tmp / "live-data"}"', "",
                 "[broker]", f'receiver = "tcp://127.0.0.1:{free_port()}"', f'sender = "tcp://127.0.0.1:{free_port()}"',
                 "linger_ms = 5", "", "[http]", f"port = {self.port}"]
        lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in self.http.items()]
        for game, tz in self.zones.items():
            lines += ["", f"[games.{game}]", f'tz = "{tz}"']
        for name in ("gamelog", "payment", "syncuser"):
            lines += ["", f"[sources.{name}]", f'files = ["{logs / (name + ".txt")}"]', "follow = true"]
            if name == "gamelog":
                lines.append(f'game = "{self.game}"')
        for name, opts in self.components.items():
            lines += ["", f"[components.{name}]"] + [f"{k} = {v!r}" for k, v in opts.items()]
        path = self.tmp / "live.toml"
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    def start(self, timeout: float = 60) -> "LiveSite":
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("ANALYTICS_STORE", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "analytics.cli", "--config", self.config(),
                                      "--log-level", "WARNING", "run"], cwd=self.tmp, env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.tmp / "live.log", "w"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"analytics run exited {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/api/v1/games", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"analytics run did not serve {self.url} within {timeout}s: {self.log()}")

    def log(self) -> str:
        p = self.tmp / "live.log"
        return p.read_text()[-3000:] if p.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "LiveSite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
