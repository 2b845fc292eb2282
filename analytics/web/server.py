"""A gevent WSGI server with a service lifecycle: start(), stop(timeout), the bound port.

What a load balancer and a browser expect of it:

* one write per response: gevent's handler sends the status line and headers in
  one write and the body in another; on a kept-alive connection the second
  small write waits for the client's delayed ACK (Nagle), ~40 ms per request.
  `_Handler` joins them into one write, and sets TCP_NODELAY so that the later
  writes of a stream (Server-Sent Events) leave at once too;
* kept-alive connections idle for `idle_timeout` seconds are closed (longer than
  the usual load balancer's 60 s, so the balancer closes first); a client that
  stops sending in the middle of a request is dropped after as long;
* a request gevent refuses by itself (a malformed request line, header or chunk
  framing: 400; a request line of 8 KB or more: 414) is counted with the app's
  responses and logged at INFO: a client's mistake, not an error of the server;
* a server with read routes refuses a public address without read keys
  (ConfigError, see analytics.web.access), whoever starts it.
"""
from __future__ import annotations

import logging
import socket
from typing import Any

from gevent.pywsgi import _BAD_REQUEST_RESPONSE, WSGIHandler, WSGIServer

__all__ = ["WebServer"]

log = logging.getLogger(__name__)


class _Handler(WSGIHandler):
    """gevent's handler with one write per response head, no Nagle stall, and an idle timeout."""

    def handle(self) -> None:
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a unix socket in someone's test): nothing to tune
            pass
        self.socket.settimeout(self.server.idle_timeout)
        super().handle()

    def handle_one_request(self) -> Any:
        result = super().handle_one_request()
        if isinstance(result, tuple):   # gevent answered by itself (a bad request line or header, 414): count it
            counters = getattr(self.server.application, "counters", None)
            if counters is not None:
                counters.count(int(result[0]))
        return result

    def _handle_client_error(self, ex: BaseException) -> Any:
        if not isinstance(ex, (ValueError, OSError)):
            return super()._handle_client_error(ex)   # not a client's mistake: gevent prints the traceback
        # A client's mistake (bad request line, header or chunk framing): a 400, not an error of the server.
        peer = self.client_address[0] if isinstance(self.client_address, tuple) else self.client_address
        log.info("http: invalid request from %s: %s", peer, ex)
        return "400", _BAD_REQUEST_RESPONSE

    def _write_with_headers(self, data: bytes) -> None:
        # gevent writes the head, then the first body chunk: collect both and send them as one.
        pending: list[bytes] = []
        self._sendall = pending.append  # type: ignore[method-assign]
        try:
            super()._write_with_headers(data)
        finally:
            del self._sendall
        self._sendall(b"".join(pending))


class _Server(WSGIServer):
    handler_class = _Handler
    idle_timeout: float = 75.0


class WebServer:
    """Serve a WSGI app on host:port (port 0: any free port; `port` is the bound one)."""

    #: Requests served at once; more wait in the listen backlog.
    max_connections: int = 1000
    #: Seconds a kept-alive connection may stay idle, or a request may stall, before it is closed.
    idle_timeout: float = 75.0

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8600) -> None:
        self.app, self.host, self.requested_port = app, host, int(port)
        self._server: WSGIServer | None = None

    def start(self) -> "WebServer":
        """Listen; ConfigError if the app serves reads on a public address without read keys."""
        from gevent.pool import Pool
        access = getattr(self.app, "access", None)
        if access is not None and getattr(self.app, "serves_reads", False):
            access.check_bind(self.host)
        self._server = _Server((self.host, self.requested_port), self.app, log=None,
                               error_log=logging.getLogger("analytics.web.wsgi"),
                               spawn=Pool(self.max_connections))
        self._server.idle_timeout = self.idle_timeout
        self._server.start()
        log.info("http: serving on %s", self.url)
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        if self._server is None:
            self.start()
        self._server.serve_forever()

    def stop(self, timeout: float | None = 5) -> None:
        if self._server is not None:
            self._server.stop(timeout=timeout)
            self._server = None

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
