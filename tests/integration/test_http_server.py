"""The HTTP server as a load balancer and a browser see it, on real sockets on 127.0.0.1: one write per
response (no keep-alive stall), chunked request bodies, idle keep-alive connections closed, and a
public address refused without read keys (by the server and by `analytics serve`).

The public address tried is 192.0.2.1 (TEST-NET-1, on no interface here): a server that wrongly
accepted it could not bind it either, so no test ever listens beyond loopback."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from gevent.threadpool import ThreadPool

from analytics.config import ConfigError, load_settings
from analytics.store import open_store
from analytics.web.app import create_app
from analytics.web.intake import Intake, IntakeSettings, intake_routes
from analytics.web.server import WebServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(55)]

ROOT = Path(__file__).resolve().parents[2]
TS = int(time.time()) - 3600
PUBLIC = "192.0.2.1"
EV = {"game": "dl", "area": "a1", "plat": "1", "uid": "u1", "ts": TS, "code": "login_logcount"}


@pytest.fixture
def pool():
    p = ThreadPool(2)  # blocking client sockets in threads, so the server's greenlets keep running
    yield p
    p.kill()


@pytest.fixture
def served(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.extra["http"] = {"max_body_bytes": 4096}
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.setup()
    intake = Intake(IntakeSettings.from_table(settings.extra["http"]))
    server = WebServer(create_app(settings, store, routes=intake_routes(intake, settings)), "127.0.0.1", 0)
    server.idle_timeout = 1.0
    server.start()
    yield server, intake
    server.stop()
    store.close()


def request(path: str, body: bytes = b"", method: str = "POST", headers: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}"
    if body and "chunked" not in headers:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
    return head.encode() + b"\r\n" + body


def read_response(sock: socket.socket) -> tuple[int, bytes, int]:
    """(status, body, how many recv() calls it took) of one Content-Length response."""
    buf, recvs = b"", 0
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
        recvs += 1
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += sock.recv(65536)
        recvs += 1
    return int(head.split()[1]), body, recvs


def keep_alive_session(port: int, n: int) -> list[tuple[float, int]]:
    """n POSTs on one kept-alive connection: (seconds, recv() calls) of each."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n):
            t = time.perf_counter()
            sock.sendall(request("/api/v1/event/save", orjson.dumps(dict(EV, uid=f"k{i}"))))
            status, _, recvs = read_response(sock)
            assert status == 200
            out.append((time.perf_counter() - t, recvs))
    return out


def test_kept_alive_requests_answer_in_one_write_without_a_stall(served, pool):
    server, intake = served
    timings = pool.spawn(keep_alive_session, server.port, 30).get()
    seconds = sorted(t for t, _ in timings[1:])
    # Head and body in two writes wait for the client's delayed ACK: ~40 ms each. One write: well under 1 ms.
    assert seconds[len(seconds) // 2] < 0.02, seconds
    assert all(recvs == 1 for _, recvs in timings), timings  # the whole response arrives as one segment
    assert sum(intake.accepted.values()) == 30


def chunked_post(port: int, payload: bytes, parts: int) -> tuple[int, dict]:
    step = max(1, len(payload) // parts)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (payload[i:i + step] for i in range(0, len(payload), step)))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request("/api/v1/event/save", chunks + b"0\r\n\r\n",
                             headers="Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"))
        status, body, _ = read_response(sock)
    return status, orjson.loads(body)


def test_a_chunked_body_is_read_within_max_body_bytes(served, pool):
    server, intake = served
    status, body = pool.spawn(chunked_post, server.port, orjson.dumps([dict(EV, uid="c1"), dict(EV, uid="c2")]), 3).get()
    assert status == 200 and body["accepted"] == 2, body
    status, body = pool.spawn(chunked_post, server.port, orjson.dumps(dict(EV, data={"x": "y" * 5000})), 4).get()
    assert status == 413 and "max_body_bytes" in body["error"]
    assert intake.accepted == {"": 2}


def raw_exchange(port: int, data: bytes) -> tuple[int, bytes, bool]:
    """Send `data` as is; (status, body, whether the server then closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        status, body, _ = read_response(sock)
        return status, body, sock.recv(1) == b""


def test_a_broken_or_stalled_body_is_a_4xx_that_closes_the_connection(served, pool, caplog):
    server, intake = served
    broken = request("/api/v1/event/save", b"zz\r\n{}\r\n0\r\n\r\n",
                     headers="Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n")
    status, body, closed = pool.spawn(raw_exchange, server.port, broken).get()
    assert status == 400 and b"could not be read" in body and closed
    stalled = request("/api/v1/event/save", b"", headers="Content-Length: 100\r\n") + b'{"game": "dl"'
    t = time.monotonic()
    status, body, closed = pool.spawn(raw_exchange, server.port, stalled).get()
    assert status == 408 and closed and 0.5 < time.monotonic() - t < 5   # idle_timeout is 1 s here
    assert not [r for r in caplog.records if r.levelno >= 40], caplog.records
    assert intake.accepted == {}


def test_requests_the_server_refuses_itself_are_counted_not_logged_as_errors(served, pool, caplog):
    server, _ = served
    status, _, closed = pool.spawn(raw_exchange, server.port, b"GET /healthz" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n").get()
    assert status == 414 and closed
    status, _, closed = pool.spawn(raw_exchange, server.port, b"GARBAGE\r\n\r\n").get()
    assert status == 400 and closed
    status, _, _ = pool.spawn(raw_exchange, server.port, b"GET /healthz HTTP/7.0\r\n\r\n").get()
    assert status == 400
    assert server.app.counters.as_dict()["responses"] == {"400": 2, "414": 1}
    assert not [r for r in caplog.records if r.levelno >= 40], [r.getMessage() for r in caplog.records]


def idle_close(port: int) -> float:
    """Seconds after its last answer until the server closes an idle kept-alive connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request("/healthz", method="GET"))
        assert read_response(sock)[0] == 200
        t = time.monotonic()
        assert sock.recv(1) == b""   # the server closed it (a timeout here raises)
        return time.monotonic() - t


def test_an_idle_kept_alive_connection_is_closed_after_idle_timeout(served, pool):
    server, _ = served
    waited = pool.spawn(idle_close, server.port).get()
    assert 0.5 < waited < 5, waited


def test_a_public_address_without_read_keys_is_refused_before_binding(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        server = WebServer(create_app(settings, store), PUBLIC, 0)
        with pytest.raises(ConfigError, match="not loopback"):
            server.start()
        with pytest.raises(RuntimeError):
            server.port   # nothing was bound
    finally:
        store.close()


def test_serve_on_a_public_address_without_read_keys_exits_2_with_one_line(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[analytics]\nstore = "sqlite:///{tmp_path / "s.db"}"\n[http]\nhost = "{PUBLIC}"\nport = 0\n')
    r = subprocess.run([sys.executable, "-m", "analytics.cli", "--config", str(cfg), "serve"], cwd=ROOT,
                       capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: [http] host '{PUBLIC}' is not loopback"), r.stderr
