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

import gevent
import gevent.event

__all__ = ["DiskLog", "GroupCommitLog"]

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
        #: A write failed mid-file: the next append starts on a fresh line (the torn one is dead-lettered
        #: by whoever reads it, and was never acknowledged).
        self._torn = False
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
        if self._torn:
            raw = b"\n" + raw
            self._torn = False
        try:
            self._fh.write(raw)
        except BaseException:
            self._torn = True
            raise
        self._size += len(raw)
        self._dirty = True
        self.records += 1

    def flush(self) -> None:
        """Push appended records to the OS (and to disk if fsync is set) before publishing them."""
        if self._dirty and self._fh is not None:
            try:
                self._fh.flush()
                if self.fsync:
                    os.fsync(self._fh.fileno())
            except BaseException:
                self._torn = True
                raise
            self._dirty = False

    def close(self) -> None:
        if self._fh is not None:
            self.flush()
            self._fh.close()
            self._fh = None


class GroupCommitLog:
    """A DiskLog whose `append` returns only once the records are flushed (fsync'ed if set).

    What the HTTP intake answers 200 on: an event is in the log on disk before the client
    hears it was taken. Appends arriving within `commit_ms` of each other share one write
    and one flush (group commit), so throughput holds with many small requests. A write
    error raises OSError in every waiting append (the intake answers 503; nothing is
    acknowledged that is not on disk).
    """

    def __init__(self, log: DiskLog, *, commit_ms: float = 2.0) -> None:
        self.log = log
        self.commit_ms = commit_ms
        self._pending: list[tuple[list[bytes], gevent.event.AsyncResult]] = []
        self._committer: gevent.Greenlet | None = None
        self.commits = 0
        self.failures = 0

    @property
    def waiting(self) -> int:
        """Records waiting for the next commit."""
        return sum(len(raws) for raws, _ in self._pending)

    def append(self, raws: list[bytes]) -> None:
        """Append `raws` and wait until they are flushed; OSError if they could not be written."""
        if not raws:
            return
        done = gevent.event.AsyncResult()
        self._pending.append((raws, done))
        if self._committer is None:
            self._committer = gevent.spawn_later(self.commit_ms / 1000.0, self._commit)
        done.get()

    def _commit(self) -> None:
        pending, self._pending = self._pending, []
        self._committer = None
        try:
            for raws, _ in pending:
                for raw in raws:
                    self.log.append(raw)
            self.log.flush()
        except Exception as exc:  # every waiter hears it; none is answered as taken
            self.failures += 1
            log.error("disk log %s: write failed (%s); %d request(s) refused", self.log.path,
                      exc, len(pending))
            for _, done in pending:
                done.set_exception(exc if isinstance(exc, OSError) else OSError(str(exc)))
            return
        self.commits += 1
        for _, done in pending:
            done.set(None)

    def close(self) -> None:
        if self._committer is not None:
            self._committer.kill()   # runs nothing half: a killed commit never started writing
            self._commit()
        self.log.close()
