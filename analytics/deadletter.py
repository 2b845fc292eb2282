"""Dead letters: every rejected input is written with its reason and counted.

One JSON object a line in var/deadletter/<component>.jsonl (under data_dir):
{"at": <epoch>, "component": ..., "reason": ..., "raw": <the original line or record>}.
Nothing bad is dropped silently: an operator can read, fix and replay them.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from analytics.config import redact

__all__ = ["DeadLetters"]

log = logging.getLogger(__name__)


class DeadLetters:
    """Appends rejected records of one component to its dead-letter file."""

    #: Longest raw text kept per dead letter (oversized lines are cut, and say so).
    max_raw = 64 * 1024

    def __init__(self, directory: str | os.PathLike, component: str) -> None:
        self.path = Path(directory) / f"{component}.jsonl"
        self.component = component
        self.count = 0
        self.by_reason: dict[str, int] = {}
        self._fh = None
        self._lock = threading.Lock()

    def write(self, raw: Any, reason: str, *, at: float | None = None) -> None:
        """Record one rejected input with the reason it was rejected (a secret in the reason, such
        as a store URL's password in an error, is masked; the input is kept as it came)."""
        reason = redact(reason)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        if isinstance(raw, str):
            raw = raw.rstrip("\r\n")
            if len(raw) > self.max_raw:
                raw = raw[: self.max_raw] + f"...[cut, {len(raw)} chars]"
        line = orjson.dumps({"at": at if at is not None else time.time(), "component": self.component,
                             "reason": reason, "raw": raw}, default=repr) + b"\n"
        kind = reason.split(":", 1)[0]
        with self._lock:
            self.count += 1
            self.by_reason[kind] = self.by_reason.get(kind, 0) + 1
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "ab")
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
