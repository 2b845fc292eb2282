"""A real, throw-away etcd for tests: 127.0.0.1 only, free ports, a temporary data dir.

    with EtcdServer() as etcd:
        settings = Settings(etcd=etcd.endpoint)
        ...
        etcd.stop()      # simulate an outage
        etcd.start()     # same data dir, same ports: leases and keys survive

The binary is looked up as $ETCD_BINARY, then `etcd` on PATH, then /usr/bin/etcd.
`find_etcd()` returns None when there is none; fixtures then skip with
`INSTALL_HINT`. Nothing here imports the project, so other suites can reuse it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["EtcdServer", "EtcdStartError", "find_etcd", "free_port", "INSTALL_HINT"]

INSTALL_HINT = ("etcd server binary not found (looked at $ETCD_BINARY, PATH, /usr/bin/etcd); "
                "install it with `apt-get install -y etcd-server` (Debian/Ubuntu) to run the cluster tests")


class EtcdStartError(RuntimeError):
    """etcd did not become healthy; the message carries the tail of its log."""


def find_etcd() -> str | None:
    """Path of the etcd server binary, or None."""
    for candidate in (os.environ.get("ETCD_BINARY"), shutil.which("etcd"), "/usr/bin/etcd"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EtcdServer:
    """One single-member etcd process; `start()` waits until /health says true."""

    #: Seconds `start()` waits for /health before giving up.
    start_timeout: float = 20.0
    #: Seconds `stop()` waits after SIGTERM before SIGKILL.
    stop_timeout: float = 5.0

    def __init__(self, binary: str | None = None, data_dir: str | os.PathLike | None = None,
                 host: str = "127.0.0.1") -> None:
        binary = binary or find_etcd()
        if binary is None:
            raise EtcdStartError(INSTALL_HINT)
        self.binary = binary
        self.host = host
        self._own_tmp = data_dir is None
        self.base = Path(tempfile.mkdtemp(prefix="etcd-test-")) if data_dir is None else Path(data_dir)
        self.data_dir = self.base / "data"
        self.log_path = self.base / "etcd.log"
        self.client_port: int | None = None
        self.peer_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.name = f"test-{os.getpid()}"

    # -- addresses -------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """host:port, the form Settings.etcd takes."""
        return f"{self.host}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    # -- lifecycle -------------------------------------------------------------------
    def _command(self) -> list[str]:
        peer = f"http://{self.host}:{self.peer_port}"
        return [self.binary,
                "--name", self.name,
                "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.name}={peer}",
                "--initial-cluster-state", "new",
                "--log-level", "warn",
                "--logger", "zap"]

    def start(self, timeout: float | None = None) -> "EtcdServer":
        """Start (or restart, keeping data dir and ports) and wait until healthy."""
        if self.running:
            return self
        timeout = self.start_timeout if timeout is None else timeout
        first = self.client_port is None
        attempts = 3 if first else 1  # fresh ports may be taken meanwhile; retry with new ones
        last: Exception | None = None
        for _ in range(attempts):
            if first:
                self.client_port, self.peer_port = free_port(self.host), free_port(self.host)
            try:
                self._spawn_and_wait(timeout)
                return self
            except EtcdStartError as exc:
                last = exc
                self._kill()
        raise last  # type: ignore[misc]

    def _spawn_and_wait(self, timeout: float) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EtcdStartError(f"etcd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.05)
        raise EtcdStartError(f"etcd not healthy on {self.client_url} after {timeout:.0f} s:\n{self.log_tail()}")

    def healthy(self, timeout: float = 0.5) -> bool:
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=timeout) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with kill=True) and wait; data dir and ports are kept."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self._kill()
            else:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._kill()
        self.proc = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(self.stop_timeout)

    def close(self) -> None:
        """Stop and remove the temporary directory (if this object made it)."""
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
