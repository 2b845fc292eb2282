"""Stores by URL scheme: sqlite:// (embedded default) and mongodb:// (production).

``open_store(url)`` picks the backend from a small registry keyed by the URL's
scheme (the faust idea): ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
``mongodb://host:port/db`` (and ``mongodb+srv://``). Backends are imported lazily,
so using SQLite never imports pymongo.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from analytics.config import redact
from analytics.store.base import (Batch, MemberKey, QueryError, Store, StoreError,  # noqa: F401
                                  StoreUnavailable)
from analytics.store.bitmaps import parse_size

__all__ = ["open_store", "BACKENDS", "Batch", "MemberKey", "QueryError", "Store", "StoreError",
           "StoreUnavailable"]

log = logging.getLogger(__name__)


def _sqlite(url: str, dedupe_horizon_days: int) -> Store:
    from analytics.store.sqlite import SQLiteStore
    parts = urlsplit(url)
    if parts.netloc:
        raise StoreError(f"bad sqlite URL {url!r}: use sqlite:///relative/path.db or sqlite:////abs/path.db")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise StoreError(f"bad sqlite URL {url!r}: no file path")
    query = parse_qs(parts.query)
    unknown = set(query) - {"busy_timeout_ms", *SET_OPTIONS}
    if unknown:
        raise StoreError(f"unknown option(s) {sorted(unknown)} in {url!r}; known: busy_timeout_ms, "
                         + ", ".join(SET_OPTIONS))
    timeout = int(query["busy_timeout_ms"][0]) if "busy_timeout_ms" in query else None
    return SQLiteStore(path, url=url, busy_timeout_ms=timeout, **set_options(url, query))


#: Store URL options of the membership sets, on every backend (docs/stores.md).
SET_OPTIONS = ("cache_bytes", "part_bits")


def set_options(url: str, query: Mapping[str, list[str]]) -> dict[str, Any]:
    """cache_bytes (the hot-set cache budget: 67108864, 64MiB, 512k) and part_bits from a URL's query."""
    out: dict[str, Any] = {}
    try:
        if "cache_bytes" in query:
            out["cache_bytes"] = parse_size(query["cache_bytes"][0])
        if "part_bits" in query:
            out["part_bits"] = int(query["part_bits"][0])
    except ValueError as e:
        raise StoreError(f"bad option in {url!r}: {e}") from None
    return out


def _mongodb(url: str, dedupe_horizon_days: int) -> Store:
    from analytics.store.mongo import MongoStore
    return MongoStore.from_url(url, seen_ttl_seconds=dedupe_horizon_days * 86400)


#: URL scheme -> factory(url, dedupe_horizon_days). Small on purpose.
BACKENDS: dict[str, Callable[[str, int], Store]] = {
    "sqlite": _sqlite,
    "mongodb": _mongodb,
    "mongodb+srv": _mongodb,
}


def open_store(url: str, *, setup: bool = True, dedupe_horizon_days: int = 90) -> Store:
    """Open the store a URL names; with `setup` (default) also create its tables and indexes.

    Why `setup` is optional: the bolt runtime may want to open first and retry
    `setup()` itself while MongoDB is unreachable. `dedupe_horizon_days` is the
    TTL of MongoDB's seen marks (SQLite purges with `purge_seen`).
    """
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    factory = BACKENDS.get(scheme)
    if factory is None:
        raise StoreError(redact(f"unknown store URL {url!r}: known schemes are "
                                + ", ".join(f"{s}://" for s in BACKENDS)))
    store = factory(url, dedupe_horizon_days)
    if setup:
        try:
            store.setup()
        except BaseException:
            store.close()
            raise
    log.info("store %s opened", scheme)
    return store
