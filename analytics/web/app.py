"""The falcon app: the routes its owner gives (the http spout: its intake), the stats API, the dashboard at /.

Every response is counted by status (`app.counters`, also at /api/v1/http); an
error the handlers did not foresee is logged with its traceback and answered as
JSON 500 (the fuzz test fails on either). Reads need a read key when [http]
read_keys is set (analytics.web.access); /healthz never does.
"""
from __future__ import annotations

import html
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import falcon

from analytics.config import Settings
from analytics.store.base import Store
from analytics.web.access import COOKIE, OPEN_PATHS, ReadAccess, key_of
from analytics.web.api import ActiveUserResource, CollectionsResource, GamesResource, StatsResource, TotalUserResource
from analytics.web.inputs import read_body
from analytics.web.live import LiveFeed, LiveResource
from analytics.web.reports import CohortsResource, FunnelResource, MonetizationResource, TodayResource

__all__ = ["create_app", "AnalyticsApp", "HttpCounters", "STATIC_DIR", "error_serializer"]

log = logging.getLogger(__name__)

#: The dashboard's files (index.html, login.html, js/, css/, vendor/).
STATIC_DIR = Path(__file__).with_name("static")
#: How long the dashboard's cookie keeps its read key (seconds).
COOKIE_SECONDS = 30 * 86400


def error_serializer(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Every error as JSON {"error": "..."}: the description when there is one, else the title."""
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"error": exc.description or exc.title}


class HttpCounters:
    """Responses by status code since the app was made: every 4xx is counted here."""

    def __init__(self) -> None:
        self.responses: dict[int, int] = {}
        self.since = time.time()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        self.count(resp.status_code)
        if resp.status_code >= 400:
            log.debug("http: %d for %s %s", resp.status_code, req.method, req.path)

    def count(self, code: int) -> None:
        """Count one response (the server counts the ones it answers without the app: 400, 414)."""
        self.responses[code] = self.responses.get(code, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """{"responses": {"200": n, ...}, "4xx": n, "5xx": n, "since": epoch}."""
        r = self.responses
        return {"responses": {str(k): v for k, v in sorted(r.items())},
                "4xx": sum(v for k, v in r.items() if 400 <= k < 500),
                "5xx": sum(v for k, v in r.items() if k >= 500), "since": round(self.since, 3)}


class AnalyticsApp(falcon.App):
    """falcon.App with what the server and the tests read: the read access and the counters."""

    def __init__(self, access: ReadAccess, counters: HttpCounters, serves_reads: bool) -> None:
        super().__init__(middleware=[counters, _ReadKeys(access, serves_reads)])
        self.access, self.counters, self.serves_reads = access, counters, serves_reads


class _ReadKeys:
    """Every path but the open ones (intake, /healthz, the login page, /) needs a read key when keys are set."""

    def __init__(self, access: ReadAccess, serves_reads: bool) -> None:
        self.access, self.serves_reads = access, serves_reads

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.serves_reads and req.path not in OPEN_PATHS and req.path != "/":
            self.access.check(req)


def _unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]) -> None:
    """A bug, not a bad request: logged with its traceback (without the query string: it may hold a key)."""
    log.error("http: %s %s failed", req.method, req.path, exc_info=exc)
    raise falcon.HTTPError(falcon.HTTP_500, description="internal error (logged)")


def _login_page(next_url: str = "/", error: str = "") -> bytes:
    page = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
    return page.replace("{{next}}", html.escape(next_url)).replace("{{error}}", html.escape(error)).encode()


def _safe_next(value: Any) -> str:
    """A local path to go back to after the login (never another site: no '//' or scheme)."""
    text = value if isinstance(value, str) else "/"
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/"


class _Index:
    """The dashboard; without a valid read key (when keys are set), the page that asks for one (401)."""

    def __init__(self, access: ReadAccess) -> None:
        self.access = access

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.set_header("Cache-Control", "no-cache")
        if self.access.required and self.access.reader(key_of(req)) is None:
            resp.status = falcon.HTTP_401
            resp.set_header("WWW-Authenticate", 'Bearer realm="analytics"')
            resp.data = _login_page(req.relative_uri)
            return
        resp.data = (STATIC_DIR / "index.html").read_bytes()


class _Login:
    """POST /login (form: key, next): keep a read key in the dashboard's cookie; GET: the form."""

    def __init__(self, access: ReadAccess) -> None:
        self.access = access

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.data = _login_page(_safe_next(req.get_param("next")))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = falcon.uri.parse_query_string(read_body(req, 8192).decode("utf-8", "replace"))
        key, next_url = form.get("key"), _safe_next(form.get("next"))
        if not isinstance(key, str) or self.access.reader(key) is None:
            resp.status = falcon.HTTP_401
            resp.content_type = falcon.MEDIA_HTML
            resp.data = _login_page(next_url, "That is not a read key.")
            return
        # HttpOnly: no script can read it; SameSite=Strict: no other site's page can send it.
        resp.set_cookie(COOKIE, key, max_age=COOKIE_SECONDS, path="/", http_only=True, same_site="Strict",
                        secure=req.forwarded_scheme == "https")
        raise falcon.HTTPSeeOther(next_url)


class _Logout:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.unset_cookie(COOKIE, path="/", same_site="Strict")
        raise falcon.HTTPSeeOther("/")

    on_get = on_post


class _Health:
    """GET /healthz: 200 while the server answers; never behind a key (load balancers)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}
        resp.set_header("Cache-Control", "no-store")


class _HttpStats:
    """GET /api/v1/http: this server's responses by status (every 4xx counted), behind the read key."""

    def __init__(self, counters: HttpCounters) -> None:
        self.counters = counters

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.counters.as_dict()


def create_app(settings: Settings, store: Store | None, *, routes: Mapping[str, Any] | None = None,
               live: LiveFeed | None = None, clock: Callable[[], float] = time.time) -> AnalyticsApp:
    """The WSGI app. Without a store there is no stats API or dashboard.

    `routes` (path -> resource) are served as given: the http spout's intake
    (analytics.web.intake.intake_routes); `analytics serve` gives none, so the
    intake's paths are 404 there.
    `live` feeds /api/v1/live (its owner closes it); without one the stream is
    refreshed from the store every LiveFeed.refresh_seconds only. `clock` says
    what "today" is to the reports (tests move it). Raises ConfigError for a bad
    [http] read_keys / public_read.
    """
    access = ReadAccess.from_table(settings.extra.get("http", {}))
    counters = HttpCounters()
    app = AnalyticsApp(access, counters, serves_reads=store is not None)
    app.set_error_serializer(error_serializer)
    app.add_error_handler(Exception, _unexpected)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = False
    app.add_route("/healthz", _Health())
    for path, resource in (routes or {}).items():
        app.add_route(path, resource)
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
        app.add_route("/api/v1/http", _HttpStats(counters))
        app.add_route("/", _Index(access))
        app.add_route("/login", _Login(access))
        app.add_route("/logout", _Logout())
        app.add_static_route("/static", str(STATIC_DIR.resolve()))
    return app
