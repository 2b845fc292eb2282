"""A real MongoDB wire-protocol server for tests: SecantusDB, or an external MongoDB.

SecantusDB (PyPI `SecantusDB`, a test-only dependency) is a single-node server on
WiredTiger that speaks the MongoDB wire protocol and advertises itself as a
one-member replica set, so multi-document transactions work. It is NOT MongoDB;
tests and figures call it "SecantusDB (MongoDB wire protocol)".

    with SecantusServer() as server:     # a `secantusd-py` process on 127.0.0.1, free port
        url = server.url                 # mongodb://127.0.0.1:PORT/
        server.kill()                    # kill -9: a crash of the database
        server.start()                   # same storage dir, same port: data survives

It runs as its own process (not in-process threads): the tests' gevent loops and
pymongo's blocking sockets then never starve it, and `kill()` is a real crash.
`mongo_url()` returns $ANALYTICS_TEST_MONGO_URL when set (a real mongod or replica
set), else the URL of one SecantusDB started for the whole test session.
Nothing here imports the project.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["SecantusServer", "SecantusStartError", "find_secantusd", "mongo_url", "mongo_database_url",
           "drop_database", "INSTALL_HINT", "EXTERNAL_URL_VAR"]

EXTERNAL_URL_VAR = "ANALYTICS_TEST_MONGO_URL"
INSTALL_HINT = ("SecantusDB is not installed: `pip install -e '.[test]'` installs it "
                f"(or set {EXTERNAL_URL_VAR}=mongodb://host:27017 to use a real MongoDB)")


class SecantusStartError(RuntimeError):
    """The server did not accept connections in time; the message carries the tail of its log."""


def find_secantusd() -> str | None:
    """Path of the `secantusd-py` launcher next to this Python, or on PATH; None when missing."""
    here = Path(sys.executable).with_name("secantusd-py")
    if here.is_file():
        return str(here)
    return shutil.which("secantusd-py")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SecantusServer:
    """One `secantusd-py` process on 127.0.0.1; `start()` waits until it answers a ping."""

    #: Seconds `start()` waits for the server to answer.
    start_timeout: float = 30.0
    #: Seconds `stop()` waits after SIGTERM before SIGKILL.
    stop_timeout: float = 10.0

    def __init__(self, storage_path: str | os.PathLike | None = None, port: int | None = None) -> None:
        binary = find_secantusd()
        if binary is None:
            raise SecantusStartError(INSTALL_HINT)
        self.binary = binary
        self._own_dir = storage_path is None
        self.storage_path = Path(storage_path or tempfile.mkdtemp(prefix="secantus-"))
        self.port = port or _free_port()
        self.log_path = self.storage_path.with_name(self.storage_path.name + ".log")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> "SecantusServer":
        """Start (or restart on the same storage and port) and wait until a ping succeeds."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(self.storage_path), "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._answers():
                return self
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        self.stop()
        raise SecantusStartError(f"secantusd-py on port {self.port} did not start: {tail}")

    def _answers(self) -> bool:
        import pymongo
        try:
            with pymongo.MongoClient(self.url, serverSelectionTimeoutMS=300, connectTimeoutMS=300) as c:
                c.admin.command("ping")
            return True
        except Exception:
            return False

    def kill(self) -> None:
        """kill -9 the server: a crash, with whatever WiredTiger has on disk."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop and remove the storage directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.storage_path, ignore_errors=True)
            try:
                self.log_path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "SecantusServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_session_server: SecantusServer | None = None


def mongo_url() -> str:
    """$ANALYTICS_TEST_MONGO_URL, else the URL of a SecantusDB started once per test session.

    The session's server is stopped at interpreter exit (tests/conftest.py also closes it).
    Tests isolate themselves by database name.
    """
    global _session_server
    external = os.environ.get(EXTERNAL_URL_VAR, "")
    if external:
        return external
    if _session_server is None:
        _session_server = SecantusServer().start()
        import atexit
        atexit.register(close_session_server)
    return _session_server.url


def mongo_database_url(base: str | None = None) -> str:
    """A store URL (`mongodb://host:port/analytics_test_xxxx`) of a fresh database on `base` (default
    `mongo_url()`); the caller drops it with `drop_database`."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(base or mongo_url())
    return urlunsplit(parts._replace(path=f"/analytics_test_{uuid.uuid4().hex[:12]}"))


def drop_database(url: str) -> None:
    """Drop the database a store URL names (best effort: a test's clean-up must not mask its failure)."""
    import pymongo
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    try:
        with pymongo.MongoClient(urlunsplit(parts._replace(path="/")), serverSelectionTimeoutMS=3000) as c:
            c.drop_database(parts.path.lstrip("/"))
    except Exception:
        pass


def close_session_server() -> None:
    global _session_server
    if _session_server is not None:
        _session_server.close()
        _session_server = None
