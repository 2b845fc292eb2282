"""`analytics serve`: the stats API and the dashboard over the configured store, without the intake.

/api/v1/live follows the configured broker's day-bolt state topics when a topology runs
there (else it refreshes from the store). Also runs the alert rules of [alerts] (analytics.alerts) in a greenlet when any are configured.
"""
from __future__ import annotations

import logging
import signal
import sys

import gevent
import gevent.event

from analytics.config import Settings
from analytics.store import open_store
from analytics.web.access import ReadAccess
from analytics.web.app import create_app
from analytics.web.live import LiveFeed
from analytics.web.server import WebServer

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT; prints the URL on stderr once listening. Returns the exit code.

    ConfigError (exit 2 from the CLI) for a non-loopback host without [http] read_keys or public_read.
    """
    http = settings.extra.get("http", {})
    host = host or str(http.get("host", "127.0.0.1"))
    ReadAccess.from_table(http).check_bind(host)  # before anything opens: a public address needs read keys
    store = open_store(settings.store, dedupe_horizon_days=settings.dedupe_horizon_days)
    # /api/v1/live follows the day bolts of the topology whose broker is configured, if one runs
    live = LiveFeed(store, settings, endpoint=settings.broker.sender)
    server = WebServer(create_app(settings, store, live=live), host,
                       int(http.get("port", 8600) if port is None else port)).start()
    print(f"analytics serve: dashboard and API on {server.url}/", file=sys.stderr, flush=True)
    monitor = None
    if settings.extra.get("alerts", {}).get("rules"):
        from analytics.alerts import AlertMonitor
        monitor = AlertMonitor.from_settings(settings, store).start()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    stop.wait()
    if monitor is not None:
        monitor.stop()
    live.close()
    server.stop()
    store.close()
    return 0
