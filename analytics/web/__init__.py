"""The HTTP side: event intake, stats API and dashboard in one falcon app (docs/http.md)."""
from analytics.web.app import create_app
from analytics.web.server import WebServer

__all__ = ["create_app", "WebServer"]
