"""The message tuple that flows through the topology, and stable record ids.

A tuple is what a spout or bolt emits: a topic (what kind of record), a stable
id (so every hop can deduplicate a replayed record), the event's own timestamp
(epoch seconds; periods are computed from it, never from the wall clock) and a
body (a JSON-compatible dict).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["Tuple", "record_id", "derived_id", "partition_of"]


@dataclass(slots=True)
class Tuple:
    topic: str
    id: str
    ts: int
    body: dict[str, Any] = field(default_factory=dict)


def record_id(raw: bytes | str, scope: str = "") -> str:
    """Stable id of a raw source record: a hash of its exact bytes (and of `scope`).

    Used when the source has no id of its own; the same line replayed from a
    disk log gets the same id, which is what makes replays idempotent. `scope`
    is what the line itself does not say but identifies it: gamelog lines do not
    name their game, so two games' identical lines must not share an id.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    h = _scoped_hash(scope).copy()
    h.update(raw.rstrip(b"\r\n"))
    return h.hexdigest()


@lru_cache(maxsize=256)
def _scoped_hash(scope: str) -> Any:
    """A hash already fed with `scope` (copying it is half the cost of starting anew)."""
    h = hashlib.blake2b(digest_size=12)
    if scope:
        h.update(scope.encode("utf-8") + b"\x1f")
    return h


def derived_id(*parts: Any) -> str:
    """Stable id of a derived tuple, from the parts that make it unique."""
    text = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return hashlib.blake2b(text, digest_size=12).hexdigest()


def partition_of(game: str, area: str, partitions: int) -> int:
    """The partition of a (game, area): how instances of one bolt share work."""
    if partitions <= 1:
        return 0
    digest = hashlib.blake2b(f"{game}\x1f{area}".encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % partitions
