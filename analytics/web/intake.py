"""The HTTP intake's request handlers: event save (one, JSON array, NDJSON) and the GIF beacon.

Handlers validate (analytics.web.events) and hand accepted events to the intake
log (disklog.GroupCommitLog): a request is answered 200 only once its events are
appended and flushed to data/http_*.txt, which HttpIntakeSpout follows like any
file, with checkpointed positions. A log that cannot be written answers 503 (and
the event is never acknowledged); so does a backlog of more than `queue_size`
events that the spout has not read yet: a burst is pushed back to the clients,
never dropped.
"""
from __future__ import annotations

import base64
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import falcon

from analytics.config import Settings
from analytics.web.access import ReadAccess
from analytics.web.events import Accepted, Invalid, Limits, from_query, parse_batch, validate
from analytics.web.inputs import Masker, read_body

__all__ = ["Intake", "IntakeSettings", "EventSaveResource", "PixelResource", "PIXEL_GIF", "NO_CACHE",
           "intake_routes"]

log = logging.getLogger(__name__)

#: The 1x1 transparent GIF the beacon answers with.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
#: Headers that keep browsers and proxies from caching the beacon (so every hit arrives).
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache", "Expires": "0"}


@dataclass
class IntakeSettings:
    """The intake part of the [http] table."""
    #: Largest accepted request body, in bytes (413 beyond).
    max_body_bytes: int = 1 << 20
    #: Most events in one batch request (413 beyond).
    max_batch: int = 1000
    #: Accepted events the spout has not read yet; beyond it, requests get 503.
    queue_size: int = 10000
    #: Milliseconds an event may wait for others to share its disk write and flush (group commit).
    commit_ms: float = 2.0
    #: Seconds a 503 tells the client to wait (Retry-After).
    retry_after: int = 1
    #: API key -> source name; empty: no key needed.
    api_keys: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> "IntakeSettings":
        lim = {k: int(table[k]) for k in ("max_field_chars", "max_data_bytes", "max_future_seconds", "min_ts",
                                          "max_depth") if k in table}
        keys = table.get("api_keys") or {}
        if not isinstance(keys, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in keys.items()):
            from analytics.config import ConfigError
            raise ConfigError(f"[http] api_keys must be a table of \"key\" = \"source-name\", got {keys!r}")
        return cls(max_body_bytes=int(table.get("max_body_bytes", cls.max_body_bytes)),
                   max_batch=int(table.get("max_batch", cls.max_batch)),
                   queue_size=int(table.get("queue_size", cls.queue_size)),
                   retry_after=int(table.get("retry_after", cls.retry_after)),
                   commit_ms=float(table.get("commit_ms", cls.commit_ms)),
                   api_keys=dict(keys), limits=Limits(**lim))


class Intake:
    """What the handlers share with the spout: the intake log, the limits, keys, counters."""

    def __init__(self, settings: IntakeSettings, *, log: Callable[[list[bytes]], None] | None = None,
                 reject: Callable[[Any, str], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        """`log(raws)` returns once the raw events are on disk, or raises OSError (None: nowhere,
        for tests of the handlers alone)."""
        self.settings = settings
        self.log = log
        self.reject = reject or (lambda raw, reason: None)
        self.clock = clock
        #: Accepted events per source name ('' without API keys), and 503 answers.
        self.accepted: dict[str, int] = {}
        self.rejected = 0
        self.busy = 0
        #: Events written to the log, and read back by the spout (backlog = the difference).
        self.appended = 0
        self.consumed = 0
        #: Why the last request was refused with 503 (the answer's reason).
        self.refusal = ""

    @property
    def backlog(self) -> int:
        return max(0, self.appended - self.consumed)

    def source_of(self, key: str | None) -> str | None:
        """The source name an API key stands for; '' when no keys are configured; None if refused."""
        keys = self.settings.api_keys
        if not keys:
            return ""
        if not key:
            return None
        for k, source in keys.items():
            if hmac.compare_digest(k.encode(), key.encode()):
                return source
        return None

    def check(self, event: Any) -> Accepted:
        try:
            return validate(event, self.clock(), self.settings.limits)
        except Invalid as exc:
            self.rejected += 1
            self.reject(event if not isinstance(event, Invalid) else "", str(exc))
            raise

    def room(self) -> int:
        return self.settings.queue_size - self.backlog

    def put(self, items: list[Accepted], source: str) -> bool:
        """Write all of `items` to the intake log, or none of them; True once they are on disk.

        False (answer 503) when the spout is `queue_size` events behind, or the log cannot
        be written: `refusal` says which.
        """
        if len(items) > self.room():
            self.busy += 1
            self.refusal = (f"intake queue is full ({self.settings.queue_size} events): retry after "
                            f"{self.settings.retry_after}s")
            return False
        if self.log is not None:
            try:
                self.log([a.raw for a in items])
            except OSError as exc:
                self.busy += 1
                self.refusal = f"intake log cannot be written ({type(exc).__name__}): retry after " \
                               f"{self.settings.retry_after}s"
                log.error("intake: %d event(s) refused, the intake log cannot be written: %s", len(items), exc)
                return False
        self.appended += len(items)
        self.accepted[source] = self.accepted.get(source, 0) + len(items)
        return True


def _fail(status: str, message: str, **headers: str) -> falcon.HTTPError:
    """An HTTP error whose JSON body is {"error": message} (see analytics.web.app.error_serializer)."""
    return falcon.HTTPError(status, description=message, headers=headers or None)


class EventSaveResource:
    """POST /api/v1/event/save: one JSON event, a JSON array, or NDJSON (application/x-ndjson)."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        intake, st = self.intake, self.intake.settings
        source = intake.source_of(req.get_header("X-API-Key"))
        if source is None:
            raise _fail(falcon.HTTP_401, "missing or unknown API key (send it in the X-API-Key header)")
        body = read_body(req, st.max_body_bytes, "max_body_bytes")  # Content-Length or chunked; 413 beyond
        ndjson = (req.content_type or "").split(";")[0].strip().lower() in ("application/x-ndjson",
                                                                              "application/ndjson")
        try:
            parsed = parse_batch(body, ndjson, st.limits.max_depth)
        except Invalid as exc:
            intake.rejected += 1
            intake.reject(body[:4096], str(exc))
            raise _fail(falcon.HTTP_400, str(exc))
        if isinstance(parsed, dict):
            try:
                accepted = intake.check(parsed)
            except Invalid as exc:
                raise _fail(falcon.HTTP_400, str(exc))
            if not intake.put([accepted], source):
                raise self._busy()
            resp.media = {"message_id": accepted.id}
            return
        if len(parsed) > st.max_batch:
            raise _fail(falcon.HTTP_413, f"batch of {len(parsed)} events exceeds max_batch ({st.max_batch})")
        good: list[Accepted] = []
        rejected: list[dict[str, Any]] = []
        for i, item in enumerate(parsed):
            if isinstance(item, Invalid):
                intake.rejected += 1
                intake.reject("", f"{item} (batch index {i})")
                rejected.append({"index": i, "error": str(item)})
                continue
            try:
                good.append(intake.check(item))
            except Invalid as exc:
                rejected.append({"index": i, "error": str(exc)})
        if good and not intake.put(good, source):
            raise self._busy()
        resp.media = {"accepted": len(good), "rejected": rejected, "message_ids": [a.id for a in good]}

    def _busy(self) -> falcon.HTTPError:
        st = self.intake.settings
        return _fail(falcon.HTTP_503, self.intake.refusal, **{"Retry-After": str(st.retry_after)})


class PixelResource:
    """GET /pixel.gif?...: a 1x1 GIF whatever happens; the query string is the event.

    The API key may come as X-API-Key or as an `api_key` parameter (an <img> cannot
    set headers). Rejections are counted and dead-lettered (keys masked, see
    intake_routes); a full queue is counted as busy (the beacon cannot ask for a retry).
    """

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "image/gif"
        resp.data = PIXEL_GIF
        for k, v in NO_CACHE.items():
            resp.set_header(k, v)
        try:
            self._take(req)
        except Exception:  # the GIF is promised whatever happens; a bug still shows in the log
            self.intake.rejected += 1
            log.exception("beacon: an event could not be taken (%d-character query string)", len(req.query_string))

    def _take(self, req: falcon.Request) -> None:
        intake = self.intake
        params = dict(req.params)
        key = params.pop("api_key", None) or req.get_header("X-API-Key")
        source = intake.source_of(key if isinstance(key, str) else None)
        if source is None:
            intake.rejected += 1
            intake.reject(req.query_string[:4096], "auth: missing or unknown API key")
            return
        if len(req.query_string) > intake.settings.max_body_bytes:
            intake.rejected += 1
            intake.reject(req.query_string[:4096], "size: query string too long")
            return
        try:
            event = from_query(params, intake.settings.limits.max_depth)
        except Invalid as exc:
            intake.rejected += 1
            intake.reject(req.query_string[:4096], str(exc))
            return
        try:
            accepted = intake.check(event)
        except Invalid:
            return
        if not intake.put([accepted], source):
            # Not dropped silently: the event waits in the dead letters for a replay.
            intake.reject(accepted.raw, f"busy: {intake.refusal} (beacon; replay from the dead letters)")


def _mask_dead_letters(intake: Intake, secrets: list[str]) -> None:
    """Dead letters never hold a key: whatever the intake rejects (handlers and Intake.check) is masked first."""
    reject = intake.reject
    if getattr(reject, "masked", False):
        return
    mask = Masker(secrets)

    def masked(raw: Any, reason: str) -> None:
        reject(mask(raw), mask(reason))
    masked.masked = True  # type: ignore[attr-defined]
    intake.reject = masked


def intake_routes(intake: Intake, settings: Settings) -> dict[str, Any]:
    """The intake's routes, for create_app(routes=...): the event save API and the GIF beacon.

    What the intake rejects is dead-lettered with every key masked: the read and API keys of
    settings' [http] table (ConfigError if they are malformed) and the intake's own API keys.
    """
    access = ReadAccess.from_table(settings.extra.get("http", {}))
    _mask_dead_letters(intake, access.secrets() + list(intake.settings.api_keys))
    return {"/api/v1/event/save": EventSaveResource(intake), "/pixel.gif": PixelResource(intake)}
