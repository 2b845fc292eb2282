"""Stores by URL scheme: sqlite:// (embedded default) and mongodb:// (production)."""
from analytics.store.base import (Batch, MemberKey, QueryError, Store, StoreError,  # noqa: F401
                                  StoreUnavailable)
