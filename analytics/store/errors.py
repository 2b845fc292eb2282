"""The store's exceptions, in a module of their own so that base.py and bitmaps.py both import them."""
from __future__ import annotations

__all__ = ["StoreError", "StoreUnavailable", "QueryError"]


class StoreError(Exception):
    """A store operation failed for a reason retrying will not fix."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (down, locked, disk full): retry later."""


class QueryError(StoreError, ValueError):
    """A query from user input is malformed (unknown field, `$` operator, bad type)."""
