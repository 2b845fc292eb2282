"""Stores by URL scheme: sqlite:// (embedded default) and mongodb:// (production).

``open_store(url)`` picks the backend from a small registry keyed by the URL's
scheme (the faust idea): ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
``mongodb://host:port/db`` (and ``mongodb+srv://``). Backends are imported lazily,
so using SQLite never imports pymongo.
"""
from __future__ import annotations

import logging
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from analytics.store.base import (Batch, MemberKey, QueryError, Store, StoreError,  # noqa: F401
                                  StoreUnavailable)

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
    unknown = set(query) - {"busy_timeout_ms"}
    if unknown:
        raise StoreError(f"unknown option(s) {sorted(unknown)} in {url!r}; known: busy_timeout_ms")
    timeout = int(query["busy_timeout_ms"][0]) if "busy_timeout_ms" in query else None
    return SQLiteStore(path, url=url, busy_timeout_ms=timeout)


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
        raise StoreError(f"unknown store URL {url!r}: known schemes are "
                         + ", ".join(f"{s}://" for s in BACKENDS))
    store = factory(url, dedupe_horizon_days)
    if setup:
        try:
            store.setup()
        except BaseException:
            store.close()
            raise
    log.info("store %s opened", scheme)
    return store
