"""The falcon app: intake routes (when an Intake is given), the stats API, the dashboard at /."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import falcon

from analytics.config import Settings
from analytics.store.base import Store
from analytics.web.api import ActiveUserResource, CollectionsResource, GamesResource, StatsResource, TotalUserResource
from analytics.web.intake import EventSaveResource, Intake, PixelResource
from analytics.web.live import LiveFeed, LiveResource
from analytics.web.reports import CohortsResource, FunnelResource, MonetizationResource, TodayResource

__all__ = ["create_app", "STATIC_DIR", "error_serializer"]

#: The dashboard's files (index.html, js/, css/, vendor/).
STATIC_DIR = Path(__file__).with_name("static")


def error_serializer(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Every error as JSON {"error": "..."}: the description when there is one, else the title."""
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"error": exc.description or exc.title}


class _Index:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.data = (STATIC_DIR / "index.html").read_bytes()
        resp.set_header("Cache-Control", "no-cache")


def create_app(settings: Settings, store: Store | None, intake: Intake | None = None,
               live: LiveFeed | None = None, clock: Callable[[], float] = time.time) -> falcon.App:
    """The WSGI app. Without a store there is no stats API or dashboard; without an intake, no intake.

    `live` feeds /api/v1/live (its owner closes it); without one the stream is
    refreshed from the store every LiveFeed.refresh_seconds only. `clock` says
    what "today" is to the reports (tests move it).
    """
    app = falcon.App()
    app.set_error_serializer(error_serializer)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = False
    if intake is not None:
        app.add_route("/api/v1/event/save", EventSaveResource(intake))
        app.add_route("/pixel.gif", PixelResource(intake))
    if store is not None:
        app.add_route("/api/v1/stats/{collection}", StatsResource(store, settings))
        app.add_route("/api/v1/collections", CollectionsResource())
        app.add_route("/api/v1/games", GamesResource(store, settings))
        app.add_route("/api/v1/crm/user-stat/total-user", TotalUserResource(store, settings))
        app.add_route("/api/v1/crm/daily-stat/active-user", ActiveUserResource(store, settings))
        app.add_route("/api/v1/cohorts", CohortsResource(store, settings, clock))
        app.add_route("/api/v1/monetization", MonetizationResource(store, settings, clock))
        app.add_route("/api/v1/funnel", FunnelResource(store, settings, clock))
        app.add_route("/api/v1/today", TodayResource(store, settings, clock))
        app.add_route("/api/v1/live", LiveResource(live or LiveFeed(store, settings, clock=clock), settings))
        app.add_route("/", _Index())
        app.add_static_route("/static", str(STATIC_DIR.resolve()))
    return app
