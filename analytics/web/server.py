"""A gevent WSGI server with a service lifecycle: start(), stop(timeout), the bound port."""
from __future__ import annotations

import logging
from typing import Any

from gevent.pywsgi import WSGIServer

__all__ = ["WebServer"]

log = logging.getLogger(__name__)


class WebServer:
    """Serve a WSGI app on host:port (port 0: any free port; `port` is the bound one)."""

    #: Requests served at once; more wait in the listen backlog.
    max_connections: int = 1000

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8600) -> None:
        self.app, self.host, self.requested_port = app, host, int(port)
        self._server: WSGIServer | None = None

    def start(self) -> "WebServer":
        from gevent.pool import Pool
        self._server = WSGIServer((self.host, self.requested_port), self.app, log=None,
                                  error_log=logging.getLogger("analytics.web.wsgi"),
                                  spawn=Pool(self.max_connections))
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
