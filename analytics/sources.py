"""Readers the spouts take their raw records from: files, stdin and HTTP polling.

Every reader has the same small interface, so one spout serves every source:

    read(max_records) -> list[bytes] | None   # raw records (lines); [] = nothing now; None = finished
    commit(force=False)                       # what read() returned was emitted: persist the position
    position() / restore(position)            # the position after what read() returned; read from one
    progress() -> (bytes done, total | None)  # for progress bars (files only)
    close()
    health                                    # {"state": "ok"|"degraded", "reason": ...}

`read` never blocks the gevent loop for long: it returns at most `max_records`
records and an HTTP request runs cooperatively (in gevent's thread pool when
sockets are not monkey-patched). Positions (file offsets, HTTP cursors) live in
one state file per spout, data/spoolstate/<name>.json, written atomically; they
are saved only by `commit`, which the spout calls after the records were emitted
(and thus appended to its disk log), so a restart never skips a record. A crash
between two commits re-reads at most `state_interval` seconds of records; their
ids are the same, so the bolts' dedupe makes that harmless.

A live spout does better than that (analytics/checkpoint.py): it builds its reader
without a state file, takes `position()` at each checkpoint, saves it only once
everything read before it is stored downstream, and `restore`s the reader to the
last saved position when something downstream lost tuples.
"""
from __future__ import annotations

import glob
import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

import gevent
import gevent.queue
import orjson

from analytics.tuples import record_id

if TYPE_CHECKING:
    import requests

__all__ = ["Reader", "StateFile", "Oversized", "Backoff", "FileFollower", "StdinReader", "HttpPoller",
           "CursorPoller", "SincePoller", "canonical", "take_line"]

log = logging.getLogger(__name__)

#: Bytes of an oversized line kept for its dead letter.
OVERSIZED_HEAD = 1024


class Reader(Protocol):
    health: dict[str, str]

    def read(self, max_records: int) -> list[bytes] | None: ...
    def commit(self, force: bool = False) -> None: ...
    def position(self) -> Any: ...
    def restore(self, position: Any) -> None: ...
    def progress(self) -> tuple[int, int | None]: ...
    def close(self) -> None: ...


class Oversized(bytes):
    """Stands for a line longer than the limit: its first bytes, and its real size in `.size`."""

    size: int

    def __new__(cls, head: bytes, size: int) -> "Oversized":
        obj = super().__new__(cls, head[:OVERSIZED_HEAD])
        obj.size = size
        return obj


def canonical(record: Any) -> bytes:
    """The raw line of a record received as JSON (HTTP): sorted keys, so its id is stable."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


# -- state file ---------------------------------------------------------------------------
class StateFile:
    """A small JSON document (offsets or a cursor), replaced atomically on save.

    `save` is throttled to one write per `min_interval` seconds unless forced; the
    last unsaved state is written by `flush` (close) or the next due save.
    """

    def __init__(self, path: str | os.PathLike, *, min_interval: float = 1.0, fsync: bool = False) -> None:
        self.path = Path(path)
        self.min_interval = min_interval
        self.fsync = fsync
        self._last = 0.0
        self._pending: dict[str, Any] | None = None

    def load(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            bad = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("state file %s unreadable (%s); moved to %s, starting from the beginning", self.path, exc, bad)
            try:
                os.replace(self.path, bad)
            except OSError:
                pass
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, state: Mapping[str, Any], *, force: bool = False) -> bool:
        """Write `state` (now, or when the throttle allows). True if written."""
        self._pending = dict(state)
        if not force and time.monotonic() - self._last < self.min_interval:
            return False
        return self.flush()

    def flush(self) -> bool:
        if self._pending is None:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(self._pending, option=orjson.OPT_INDENT_2))
            if self.fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._pending = None
        self._last = time.monotonic()
        return True


# -- lines ----------------------------------------------------------------------------------
def take_line(readline: Callable[[int], bytes], max_line_bytes: int, final: bool) -> tuple[bytes | None, int]:
    """Read one line: (line or Oversized or None, bytes consumed).

    None with consumed 0 means end of data (an incomplete last line is left unread
    unless `final`, i.e. nothing more will ever be appended to it).
    """
    cap = max_line_bytes + 2  # room for "\r\n"
    line = readline(cap)
    if not line:
        return None, 0
    if line.endswith(b"\n"):
        return line, len(line)
    if len(line) < cap:  # an incomplete last line
        return (line, len(line)) if final else (None, -len(line))
    size, head = len(line), line
    while True:  # too long: skip to its end, keeping the head for the dead letter
        chunk = readline(1 << 20)
        if not chunk:
            return (Oversized(head, size), size) if final else (None, -size)
        size += len(chunk)
        if len(head) < OVERSIZED_HEAD:
            head += chunk[:OVERSIZED_HEAD - len(head)]
        if chunk.endswith(b"\n"):
            return Oversized(head.rstrip(b"\r\n"), size - 1), size


# -- files ----------------------------------------------------------------------------------
@dataclass
class _File:
    key: str              # "<dev>:<inode>": a file keeps it across renames
    path: str
    fh: Any
    offset: int
    head: str = ""
    head_len: int = 0
    retired_at: float | None = None   # when its path stopped naming it (rotated away or deleted)
    seq: int = 0


def _fingerprint(fh: Any, n: int) -> str:
    pos = fh.tell()
    fh.seek(0)
    data = fh.read(n)
    fh.seek(pos)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class FileFollower:
    """Reads lines from files named by paths or globs, from saved offsets.

    follow=True keeps reading as files grow, picks up new files matching a glob,
    and handles rotation: a file renamed away (or deleted) is read to its end
    through the open descriptor before the new file of the same name is read;
    a file truncated in place is re-read from 0. Files are known by inode (with a
    fingerprint of their first bytes against inode reuse), so a restart resumes
    each one at its saved offset, never at its end. follow=False reads what is
    there and then finishes.
    """

    #: Bytes hashed to tell a new file from an old one with a reused inode.
    head_bytes = 128

    def __init__(self, patterns: Iterable[str], state: StateFile | None, *, follow: bool = True,
                 max_line_bytes: int = 65536, resume: bool = True, rescan_seconds: float = 1.0,
                 rotate_grace: float = 1.0, exclude: Callable[[str], bool] | None = None) -> None:
        self.patterns = [str(p) for p in patterns]
        if not self.patterns:
            raise ValueError("files: no paths or globs given")
        self.state = state
        self.follow = follow
        self.max_line_bytes = max_line_bytes
        self.rescan_seconds = rescan_seconds
        self.rotate_grace = rotate_grace
        self.exclude = exclude
        self.health = {"state": "ok", "reason": ""}
        saved = state.load() if (state is not None and resume) else {}
        self._saved: dict[str, dict[str, Any]] = dict(saved.get("files", {}))
        self._files: dict[str, _File] = {}
        self._scanned_at: float | None = None
        self._seq = 0
        self._done_bytes = 0
        self._dirty = False
        self._finished = False

    # scanning
    def _paths(self) -> list[str]:
        out: list[str] = []
        for pattern in self.patterns:
            if glob.has_magic(pattern):
                out.extend(sorted(glob.glob(pattern)))
            elif os.path.exists(pattern):
                out.append(pattern)
        return [p for p in dict.fromkeys(out) if not (self.exclude and self.exclude(p))]

    def _scan(self) -> None:
        now = time.monotonic()
        self._scanned_at = now
        present: set[str] = set()
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not os.path.isfile(path):
                continue
            key = f"{st.st_dev}:{st.st_ino}"
            present.add(key)
            known = self._files.get(key)
            if known is not None:
                known.path = path
                known.retired_at = None
                continue
            self._open(key, path, st.st_size)
        for f in self._files.values():
            if f.key not in present and f.retired_at is None:
                f.retired_at = now
                log.info("%s was rotated away or deleted; reading it to its end", f.path)

    def _open(self, key: str, path: str, size: int) -> None:
        try:
            fh = open(path, "rb")
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc)
            return
        if os.fstat(fh.fileno()).st_ino != int(key.split(":")[1]):
            fh.close()  # replaced between stat and open: the next scan sees the new one
            return
        offset = 0
        saved = self._saved.pop(key, None)
        if saved is not None:
            off, n = int(saved.get("offset", 0)), int(saved.get("head_len", 0))
            if off <= size and n <= size and _fingerprint(fh, n) == saved.get("head"):
                offset = off
            else:
                log.warning("%s: saved offset %d does not fit this file (new file with a reused inode, or "
                            "truncated); reading it from the start", path, off)
        fh.seek(offset)
        self._seq += 1
        f = _File(key, path, fh, offset, seq=self._seq)
        self._refresh_head(f, size)
        self._files[key] = f
        log.info("reading %s from offset %d", path, offset)

    def _refresh_head(self, f: _File, size: int) -> None:
        if f.head_len < self.head_bytes and size > f.head_len:
            f.head_len = min(size, self.head_bytes)
            f.head = _fingerprint(f.fh, f.head_len)

    # reading
    def read(self, max_records: int) -> list[bytes] | None:
        if self._finished:
            return None
        now = time.monotonic()
        if self._scanned_at is None or (self.follow and now - self._scanned_at >= self.rescan_seconds):
            self._scan()
        out: list[bytes] = []
        self.health = {"state": "ok", "reason": ""}
        ordered = sorted(self._files.values(), key=lambda f: (f.retired_at is None, f.seq))
        for f in ordered:
            budget = max_records - len(out)
            if budget <= 0:
                break
            final = (not self.follow) or (f.retired_at is not None and now - f.retired_at >= self.rotate_grace)
            got = self._read_file(f, budget, out, final)
            if got < budget and final:  # read to its very end: nothing more will come
                self._forget(f, keep_state=f.retired_at is None)
        if out:
            self._dirty = True
        if not self.follow and not self._files:
            self._finished = not out
            return out or None
        return out

    def _read_file(self, f: _File, budget: int, out: list[bytes], final: bool) -> int:
        fh, n = f.fh, 0
        try:
            size = os.fstat(fh.fileno()).st_size
            if size < f.offset:
                log.warning("%s shrank from %d to %d bytes (truncated); reading it from the start",
                            f.path, f.offset, size)
                f.offset, f.head, f.head_len = 0, "", 0
                fh.seek(0)
            self._refresh_head(f, size)
            if size == f.offset and not final:
                return 0
            while n < budget:
                line, used = take_line(fh.readline, self.max_line_bytes, final)
                if line is None:
                    if used < 0:
                        fh.seek(f.offset)  # incomplete last line: wait for the rest
                    break
                f.offset += used
                out.append(line)
                n += 1
        except OSError as exc:
            self.health = {"state": "degraded", "reason": f"reading {f.path}: {exc}"}
            log.error("reading %s: %s", f.path, exc)
        return n

    def _forget(self, f: _File, keep_state: bool = False) -> None:
        self._done_bytes += f.offset
        try:
            f.fh.close()
        except OSError:
            pass
        del self._files[f.key]
        if keep_state:
            self._saved[f.key] = {"path": f.path, "offset": f.offset, "head": f.head, "head_len": f.head_len}
        self._dirty = True
        log.info("finished %s at offset %d", f.path, f.offset)

    # position
    def positions(self) -> dict[str, dict[str, Any]]:
        files = dict(self._saved)
        for f in self._files.values():
            files[f.key] = {"path": f.path, "offset": f.offset, "head": f.head, "head_len": f.head_len}
        return files

    def commit(self, force: bool = False) -> None:
        if self.state is None or not (self._dirty or force):
            return
        self._dirty = False
        self.state.save({"files": self.positions()}, force=force)

    def position(self) -> dict[str, Any]:
        """Where every file is now (what a checkpoint saves): {"files": {inode key: offset...}}."""
        return {"files": self.positions()}

    def restore(self, position: Mapping[str, Any]) -> None:
        """Read every file again from `position` (a saved checkpoint); files it does not name from 0."""
        for f in self._files.values():
            try:
                f.fh.close()
            except OSError:
                pass
        self._files.clear()
        self._saved = dict((position or {}).get("files", {}))
        self._scanned_at = None
        self._done_bytes = 0
        self._finished = False

    def progress(self) -> tuple[int, int | None]:
        if self._scanned_at is None:
            self._scan()  # a progress bar asks for the total before the first read
        done, total = self._done_bytes, self._done_bytes
        for f in self._files.values():
            done += f.offset
            try:
                total += os.fstat(f.fh.fileno()).st_size
            except OSError:
                total += f.offset
        return done, total

    def close(self) -> None:
        self.commit(force=True)
        if self.state is not None:
            self.state.flush()
        for f in self._files.values():
            f.fh.close()
        self._saved = self.positions()   # position() stays right after close (a spout's last checkpoint)
        self._files.clear()


# -- stdin ----------------------------------------------------------------------------------
_EOF = object()


class StdinReader:
    """Lines from a stream (sys.stdin.buffer by default) until EOF.

    A greenlet reads the stream through gevent's cooperative file object into a
    bounded queue; `read` only drains the queue, so it never blocks. There is no
    position to save: stdin cannot be re-read.
    """

    def __init__(self, stream: Any = None, *, max_line_bytes: int = 65536, queue_size: int = 5000) -> None:
        self.stream = stream
        self.max_line_bytes = max_line_bytes
        self.health = {"state": "ok", "reason": ""}
        self.bytes_read = 0
        self._queue: gevent.queue.Queue = gevent.queue.Queue(maxsize=queue_size)
        self._pump: gevent.Greenlet | None = None
        self._eof = False

    def _open(self) -> tuple[Any, Callable[[], None]]:
        import sys
        from gevent.fileobject import FileObjectPosix
        stream = self.stream if self.stream is not None else sys.stdin.buffer
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return stream, lambda: None   # an in-memory stream never blocks
        fobj = FileObjectPosix(fd, "rb", close=False)
        return fobj, fobj.close

    def _run(self) -> None:
        try:
            stream, close = self._open()
            try:
                while True:
                    line, used = take_line(stream.readline, self.max_line_bytes, True)
                    if line is None:
                        break
                    self.bytes_read += used
                    self._queue.put(line)
            finally:
                close()
        except Exception as exc:
            log.exception("reading stdin failed")
            self.health = {"state": "degraded", "reason": f"stdin: {exc}"}
        finally:
            self._queue.put(_EOF)

    def read(self, max_records: int) -> list[bytes] | None:
        if self._pump is None:
            self._pump = gevent.spawn(self._run)
        out: list[bytes] = []
        while len(out) < max_records and not self._eof:
            try:
                item = self._queue.get_nowait()
            except gevent.queue.Empty:
                break
            if item is _EOF:
                self._eof = True
            else:
                out.append(item)
        if not out and self._eof:
            return None
        return out

    def commit(self, force: bool = False) -> None:
        pass

    def position(self) -> None:
        return None   # a stream cannot be read again: no checkpoints

    def restore(self, position: Any) -> None:
        raise ValueError("stdin cannot be read again")

    def progress(self) -> tuple[int, int | None]:
        return self.bytes_read, None

    def close(self) -> None:
        if self._pump is not None and not self._pump.dead:
            self._pump.kill(block=False)


# -- HTTP -----------------------------------------------------------------------------------
class Backoff:
    """Exponential backoff, capped: 0.5, 1, 2, ... max seconds."""

    def __init__(self, initial: float = 0.5, maximum: float = 60.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return min(self.initial * (2 ** (self.failures - 1)), self.maximum)

    def reset(self) -> None:
        self.failures = 0


def _cooperative(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call without blocking the loop (patched sockets, or a thread)."""
    from gevent import monkey
    if monkey.is_module_patched("socket"):
        return fn(*args, **kwargs)
    return gevent.get_hub().threadpool.apply(fn, args, kwargs)


class HttpPoller:
    """GETs JSON from one URL on a schedule, with timeouts, backoff and health.

    `get_json` returns the decoded answer, or None when the source failed (then
    `health` is degraded and the next try is scheduled with exponential backoff,
    capped at `backoff_max`). With `secret`, the answer must carry
    `X-Signature: hex(hmac_sha256(secret, body))`; one that does not is
    dead-lettered through `reject` ("signature: ...") and treated as a failure,
    so its records are fetched again once the signature verifies.
    """

    def __init__(self, url: str, *, poll_seconds: float = 5.0, timeout: float = 10.0,
                 backoff_initial: float = 0.5, backoff_max: float = 60.0, secret: str | None = None,
                 reject: Callable[[Any, str], None] | None = None, session: requests.Session | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.poll_seconds = poll_seconds
        self.timeout = (min(3.05, timeout), timeout)
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.secret = secret.encode() if isinstance(secret, str) and secret else None
        self.reject = reject or (lambda raw, reason: None)
        import requests  # here, not at the top: a replay of files never needs it (~50 ms of start-up)
        self.session = session or requests.Session()
        self.monotonic = monotonic
        self.health = {"state": "ok", "reason": ""}
        self.next_at = 0.0
        self.requests = 0
        self.failures = 0

    def due(self) -> bool:
        return self.monotonic() >= self.next_at

    def schedule(self, seconds: float) -> None:
        self.next_at = self.monotonic() + seconds

    def fail(self, reason: str) -> None:
        """The source failed: degrade health and retry after a backoff delay."""
        self.failures += 1
        delay = self.backoff.next_delay()
        if self.health["state"] == "ok":
            log.warning("%s failing: %s; retrying with backoff", self.url, reason)
        self.health = {"state": "degraded", "reason": reason}
        self.schedule(delay)

    def get_json(self, params: Mapping[str, Any]) -> Any | None:
        import requests
        self.requests += 1
        try:
            resp = _cooperative(self.session.get, self.url, params=dict(params), timeout=self.timeout)
        except requests.RequestException as exc:
            self.fail(f"unreachable: {self.url}: {type(exc).__name__}: {exc}")
            return None
        body = resp.content
        if resp.status_code != 200:
            self.fail(f"http: {self.url} answered {resp.status_code}: {body[:200]!r}")
            return None
        if self.secret is not None:
            given = resp.headers.get("X-Signature", "")
            want = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given.strip().lower(), want):
                reason = (f"signature: X-Signature {given[:80]!r} does not match the {len(body)}-byte body "
                          f"from {self.url} ({'missing' if not given else 'mismatch'})")
                self.reject(body, reason)
                self.fail(reason)
                return None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            reason = f"response: {self.url} answered with something that is not JSON: {exc}"
            self.reject(body, reason)
            self.fail(reason)
            return None
        if self.health["state"] != "ok":
            log.warning("%s is back after %d failed tries", self.url, self.backoff.failures)
        self.health = {"state": "ok", "reason": ""}
        self.backoff.reset()
        return data


class PolledReader:
    """What the HTTP readers share: the poller's health, a saved position, no byte progress.

    A subclass sets `poller`, `state` and `_dirty`, and says what its position is.
    """

    poller: "HttpPoller"
    state: "StateFile | None"
    _dirty: bool

    @property
    def health(self) -> dict[str, str]:
        return self.poller.health

    def position(self) -> dict[str, Any]:
        """What `commit` saves, and the constructor loads back after a restart."""
        raise NotImplementedError

    def commit(self, force: bool = False) -> None:
        if self.state is not None and (self._dirty or force):
            self._dirty = False
            self.state.save(self.position(), force=force)

    def restore(self, position: Mapping[str, Any]) -> None:
        """Poll again from `position` (a saved checkpoint)."""
        raise NotImplementedError

    def progress(self) -> tuple[int, int | None]:
        return 0, None

    def close(self) -> None:
        self.commit(force=True)
        if self.state is not None:
            self.state.flush()


class CursorPoller(PolledReader):
    """Pages `GET url?cursor=<c>&limit=<n>` -> {"records": [...], "cursor": <next>}.

    A full page is followed at once; otherwise the next poll is `poll_seconds`
    later. The cursor only moves when an answer was received and its records are
    handed out, and is persisted by `commit` after they were emitted.
    """

    def __init__(self, poller: HttpPoller, state: StateFile | None, *, limit: int = 500,
                 start_cursor: Any = "") -> None:
        self.poller = poller
        self.state = state
        self.limit = limit
        saved = state.load() if state is not None else {}
        self.cursor = saved.get("cursor", start_cursor)
        self._dirty = False

    def read(self, max_records: int) -> list[bytes] | None:
        if not self.poller.due():
            return []
        data = self.poller.get_json({"cursor": "" if self.cursor is None else self.cursor,
                                     "limit": min(self.limit, max_records)})
        if data is None:
            return []
        if not (isinstance(data, dict) and isinstance(data.get("records"), list) and "cursor" in data):
            reason = (f"response: expected {{\"records\": [...], \"cursor\": ...}} from {self.poller.url}, "
                      f"got {str(data)[:120]}")
            self.poller.reject(canonical(data), reason)
            self.poller.fail(reason)
            return []
        records = data["records"]
        if data["cursor"] is not None:
            self.cursor = data["cursor"]
        self._dirty = True
        full = len(records) >= min(self.limit, max_records) and data["cursor"] is not None
        self.poller.schedule(0.0 if full else self.poller.poll_seconds)
        return [canonical(r) for r in records]

    def position(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def restore(self, position: Mapping[str, Any]) -> None:
        if "cursor" in (position or {}):
            self.cursor = position["cursor"]
        self.poller.schedule(0.0)


class SincePoller(PolledReader):
    """Polls `GET url?since=<ts>` -> a JSON list of records with a `ts` (or {"records": [...]}).

    `since` is inclusive: the next poll asks from the largest ts received, and the
    records of that very second already handed out (known by id) are skipped, so
    a record that arrives late within the same second is still caught.
    """

    def __init__(self, poller: HttpPoller, state: StateFile | None, *, since: int = 0,
                 extra_params: Mapping[str, Any] | None = None) -> None:
        self.poller = poller
        self.state = state
        self.extra = dict(extra_params or {})
        saved = state.load() if state is not None else {}
        self.since = int(saved.get("since", since))
        self.boundary: set[str] = set(saved.get("boundary", []))
        self._dirty = False

    def read(self, max_records: int) -> list[bytes] | None:
        if not self.poller.due():
            return []
        data = self.poller.get_json({**self.extra, "since": self.since})
        if data is None:
            return []
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data = data["records"]
        if not isinstance(data, list):
            reason = f"response: expected a JSON list of records from {self.poller.url}, got {str(data)[:120]}"
            self.poller.reject(canonical(data), reason)
            self.poller.fail(reason)
            return []
        out: list[bytes] = []
        top, ids_at_top = self.since, set(self.boundary)
        for rec in data:
            raw = canonical(rec)
            rid = record_id(raw)
            ts = rec.get("ts") if isinstance(rec, dict) else None
            if isinstance(ts, int) and not isinstance(ts, bool):
                if ts == self.since and rid in self.boundary:
                    continue  # handed out by the previous poll
                if ts > top:
                    top, ids_at_top = ts, set()
                if ts == top:
                    ids_at_top.add(rid)
            out.append(raw)
        self.since, self.boundary = top, ids_at_top
        self._dirty = True
        self.poller.schedule(self.poller.poll_seconds)
        return out

    def position(self) -> dict[str, Any]:
        return {"since": self.since, "boundary": sorted(self.boundary)}

    def restore(self, position: Mapping[str, Any]) -> None:
        position = position or {}
        self.since = int(position.get("since", self.since))
        self.boundary = set(position.get("boundary", []))
        self.poller.schedule(0.0)
