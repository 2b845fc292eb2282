"""What the three source spouts share: choosing a reader, the read-emit-commit loop, validation.

A concrete spout names its source and implements `handle(raw, now)`, which
validates one raw record and emits it (or raises `Invalid`, or returns without
emitting to ignore it). `make_http_reader` builds its HTTP reader; files and
stdin are the same for every spout.

Options come from [sources.<source>] in the configuration (and [sources.<name>]
for a differently named instance), then [components.<name>], then constructor
keyword arguments, the last winning.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from analytics.component import Context, Spout
from analytics.config import ConfigError
from analytics.records import Invalid, as_epoch, as_int, as_number, as_str, parse_object, require
from analytics.sources import (FileFollower, HttpPoller, Oversized, Reader, SincePoller, StateFile,
                               StdinReader)

__all__ = ["SourceSpout", "Invalid", "parse_object", "require", "as_str", "as_int", "as_number", "as_epoch"]


#: Bytes a line may start with and still be blank (records start with '{').
_WHITESPACE = b" \t\r\n\x0b\x0c"


class SourceSpout(Spout):
    """A spout fed by one reader (files, stdin or HTTP) chosen by its options."""

    #: Records handled per next_tuple call: bounds how long one call holds the loop.
    chunk_records: ClassVar[int] = 500
    #: Validation limits (options of the same name override them).
    max_line_bytes: ClassVar[int] = 65536
    max_future_seconds: ClassVar[int] = 86400
    min_ts: ClassVar[int] = 946684800  # 2000-01-01

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        cls = type(self)
        own = name or cls.name
        configured = dict(ctx.settings.sources.get(cls.source, {}))
        if own != cls.source:
            configured.update(ctx.settings.sources.get(own, {}))
        super().__init__(ctx, name, **{**configured, **options})
        self.max_line_bytes = int(self.option("max_line_bytes", cls.max_line_bytes))
        self.max_future_seconds = int(self.option("max_future_seconds", cls.max_future_seconds))
        self.min_ts = int(self.option("min_ts", cls.min_ts))
        self.chunk_records = int(self.option("chunk_records", cls.chunk_records))
        self.state = StateFile(self.settings.data_path("spoolstate", f"{self.name}.json"),
                               min_interval=float(self.option("state_interval", 1.0)),
                               fsync=bool(self.option("fsync", False)))
        self.reader: Reader = self._make_reader()
        #: Checkpointed: the reader's position is saved only once what was read before it is stored
        #: downstream (Spout.commit_position), never by the reader itself. On for every source that
        #: keeps a position (files and HTTP, unless `resume = false`: a replay), unless
        #: `checkpoints = false` (then positions are saved as records are emitted, as before).
        self.checkpointed = bool(self.option("checkpoints", True)) and ctx.ackers is not None \
            and getattr(self.reader, "state", None) is not None
        if self.checkpointed:
            self.reader.state = None   # the spout saves positions, when they are stored downstream

    # -- readers ---------------------------------------------------------------------------
    def _make_reader(self) -> Reader:
        files, http, stdin = self.option("files"), self.option("http"), self.option("stdin")
        chosen = [k for k, v in (("files", files), ("http", http), ("stdin", stdin)) if v]
        if len(chosen) != 1:
            raise ConfigError(f"{self.name}: give exactly one source: files=[paths or globs], http=URL or "
                              f"stdin=True (got {', '.join(chosen) or 'none'})")
        if files:
            patterns = [files] if isinstance(files, (str, os.PathLike)) else list(files)
            resume = bool(self.option("resume", True))
            # resume=False (a replay) neither reads nor writes offsets: it must not move the live spout's
            return FileFollower(patterns, self.state if resume else None, follow=bool(self.option("follow", True)),
                                max_line_bytes=self.max_line_bytes, resume=resume,
                                rescan_seconds=float(self.option("rescan_seconds", 1.0)),
                                rotate_grace=float(self.option("rotate_grace", 1.0)),
                                exclude=self._is_own_disk_log)
        if stdin:
            return StdinReader(None if stdin is True else stdin, max_line_bytes=self.max_line_bytes)
        return self.make_http_reader(str(http))

    def http_poller(self, url: str) -> HttpPoller:
        """The shared HTTP client with this spout's timeouts, backoff, signature secret and dead letters."""
        return HttpPoller(url, poll_seconds=float(self.option("poll_seconds", 5.0)),
                          timeout=float(self.option("timeout", 10.0)),
                          backoff_initial=float(self.option("backoff_initial", 0.5)),
                          backoff_max=float(self.option("backoff_max", 60.0)),
                          secret=self.option("secret"), reject=self.reject)

    def make_http_reader(self, url: str) -> Reader:
        """Default HTTP source: `GET url?since=<ts>` answering a list of records."""
        return SincePoller(self.http_poller(url), self.state, since=int(self.option("since", 0)))

    def _is_own_disk_log(self, path: str) -> bool:
        """Never read the disk log this spout is writing (a glob over data/ would loop)."""
        if self.disk_log is None:
            return False
        p = Path(path)
        return p.name.startswith(f"{self.source}_") and p.parent.resolve() == Path(self.settings.data_dir).resolve()

    # -- loop ------------------------------------------------------------------------------
    def handle(self, raw: bytes, now: float) -> None:
        """Validate one raw record and emit it; raise Invalid to reject it."""
        raise NotImplementedError

    def next_tuple(self) -> bool:
        items = self.reader.read(self.chunk_records)
        if self.reader.health != self.health:
            self.health = dict(self.reader.health)
        if items is None:
            self.commit(force=True)
            return False
        now = self.ctx.clock()
        for raw in items:
            self._handle_one(raw, now)
        self._safely(self.end_chunk)
        self.commit()
        return True

    def end_chunk(self) -> None:
        """After a chunk of records was handled: emit what was held back for it (packed tuples)."""

    def _handle_one(self, raw: bytes, now: float) -> None:
        if len(raw) > self.max_line_bytes or isinstance(raw, Oversized):  # cheap test first: lines are short
            size = raw.size if isinstance(raw, Oversized) else len(raw.rstrip(b"\r\n"))
            if size > self.max_line_bytes:
                self.reject(raw, f"size: line of {size} bytes exceeds max_line_bytes ({self.max_line_bytes})")
                return
        if raw[:1] in _WHITESPACE and not raw.strip():
            return  # a blank line is not a record
        try:
            self.handle(raw, now)
        except Invalid as exc:
            self.reject(raw, str(exc))
        except Exception as exc:  # a bug must not stop the spout: count it, keep the record
            self.counters.errors += 1
            self.log.exception("%s: handling a record failed", self.name)
            self.dead_letters.write(raw, f"error: {type(exc).__name__}: {exc}")

    def commit(self, force: bool = False) -> None:
        """Flush the disk log; without checkpoints, also save the reader's position (the records were emitted)."""
        if self.disk_log is not None:
            self.disk_log.flush()
        if not self.checkpointed:
            self.reader.commit(force)

    # -- checkpoints (component.Spout) -----------------------------------------------------
    def position(self) -> Any:
        return self.reader.position() if self.checkpointed else None

    def commit_position(self, position: Any) -> None:
        self.state.save(position, force=True)

    def rewind_to(self, position: Any) -> None:
        self.reader.restore(position)

    def progress(self) -> tuple[int, int | None]:
        """(bytes done, total bytes or None): what a replay progress bar shows."""
        return self.reader.progress()

    def close(self) -> None:
        self.commit(force=True)
        self.reader.close()
