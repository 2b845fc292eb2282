"""Write-ahead disk logs: every raw record a spout reads, on disk before it is published.

Files are data/<source>_YYYYMMDDHHMM.txt (UTC stamp of the file's start), one
record a line, rotated by time and by size. `cat data/gamelog_X.txt |
./bin/read_stdin_gamelog` or `analytics replay` re-feeds them; replay is
idempotent, so re-feeding a log that was already processed changes no figure.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

__all__ = ["DiskLog"]

log = logging.getLogger(__name__)


class DiskLog:
    """Appends raw records of one source to rotating files under `directory`."""

    def __init__(self, directory: str | os.PathLike, source: str, *, rotate_seconds: int = 3600,
                 max_bytes: int = 256 * 1024 * 1024, fsync: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self.source = source
        self.rotate_seconds = rotate_seconds
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.clock = clock
        self.path: Path | None = None
        self._fh = None
        self._opened_at = 0.0
        self._size = 0
        self._dirty = False
        self.records = 0

    def _open(self, now: float) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d%H%M")
        path = self.directory / f"{self.source}_{stamp}.txt"
        n = 1
        while path.exists() and path.stat().st_size >= self.max_bytes:
            path = self.directory / f"{self.source}_{stamp}_{n}.txt"
            n += 1
        self._fh = open(path, "ab")
        self._size = path.stat().st_size
        self.path, self._opened_at = path, now
        log.info("disk log %s", path)

    def append(self, raw: bytes | str) -> None:
        """Append one record (a newline is added if missing)."""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        if not raw.endswith(b"\n"):
            raw += b"\n"
        now = self.clock()
        if self._fh is None or now - self._opened_at >= self.rotate_seconds or self._size >= self.max_bytes:
            self._open(now)
        self._fh.write(raw)
        self._size += len(raw)
        self._dirty = True
        self.records += 1

    def flush(self) -> None:
        """Push appended records to the OS (and to disk if fsync is set) before publishing them."""
        if self._dirty and self._fh is not None:
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
            self._dirty = False

    def close(self) -> None:
        if self._fh is not None:
            self.flush()
            self._fh.close()
            self._fh = None
