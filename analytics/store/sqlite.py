"""SQLiteStore: the embedded store (one file under data/), standard library sqlite3.

Why SQLite: a single machine, the demo and the tests need a store with real
transactions and no server. One `apply` is one `BEGIN IMMEDIATE ... COMMIT`,
so a batch is all-or-nothing and a replay after a crash is exact.

Tables (see docs/stores.md):

* ``docs``        stat documents of every collection: (coll, k) unique, where k is
                  the canonical JSON of the key; game/area/plat/ts copied out for indexes.
* ``bitmaps``     one row per period set part (set, game, area, plat, ts, sub, part), unique:
                  ``bits`` the roaring bitmap of its member ids (portable format), ``n`` its
                  cardinality, ``v`` its version (compare-and-swap between writers);
* ``uid_map``     (game, uid) <-> n, the dictionary of uids that are not small decimals;
* ``seen``        (scope, id) -> seen_at, the dedupe marks.

A file written before bitmaps (tables ``member_sets`` + ``members``) is migrated
on open, in chunks, idempotently (see `migrate`).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import orjson

from analytics.store.base import Batch, MemberKey, Store, StoreError, StoreUnavailable, Upsert
from analytics.store.batch import Groups, count_upserts
from analytics.store.bitmaps import (DEFAULT_CACHE_BYTES, DEFAULT_PART_BITS, DICT_BASE, ID_LIMIT, MIGRATE_CHUNK, BitMap,
                                     CachedPart, Head, apply_after, deserialize, split_ids)
from analytics.store.firstday import with_spans
from analytics.store.validation import matches, sort_docs

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

#: Columns copied out of a stat document so they can be indexed and filtered in SQL.
_COLUMNS = ("game", "area", "plat", "ts")
#: sqlite primary result codes that mean "try again later", not "your request is wrong".
_UNAVAILABLE_CODES = {5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 10: "SQLITE_IOERR", 13: "SQLITE_FULL",
                      14: "SQLITE_CANTOPEN", 15: "SQLITE_PROTOCOL"}
_UNAVAILABLE_TEXT = ("locked", "disk i/o error", "disk is full", "unable to open")
#: Ids per `IN (...)` query in `unseen`; well under SQLITE_MAX_VARIABLE_NUMBER.
_CHUNK = 500
_SET_WHERE = '"set"=? AND game=? AND area=? AND plat=? AND ts=? AND sub=?'


def _has_json() -> bool:
    """Whether this SQLite has the JSON functions (built in since 3.38, an extension before)."""
    try:
        sqlite3.connect(":memory:").execute("SELECT value FROM json_each('[1]')").fetchall()
        return True
    except sqlite3.Error:
        return False


_HAS_JSON = _has_json()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    coll TEXT NOT NULL, k TEXT NOT NULL,
    game, area, plat, ts,  -- no declared type: values keep their type (1 != '1')
    doc TEXT NOT NULL,
    PRIMARY KEY (coll, k)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_gapt ON docs (coll, game, area, plat, ts);
CREATE INDEX IF NOT EXISTS docs_ts ON docs (coll, ts);
CREATE TABLE IF NOT EXISTS bitmaps (  -- a rowid table: rows hold blobs up to megabytes
    "set" TEXT NOT NULL, game TEXT NOT NULL, area TEXT NOT NULL, plat TEXT NOT NULL,
    ts INTEGER NOT NULL, sub TEXT NOT NULL, part INTEGER NOT NULL,
    n INTEGER NOT NULL, v INTEGER NOT NULL, bits BLOB NOT NULL,
    UNIQUE ("set", game, area, plat, ts, sub, part)
);
CREATE INDEX IF NOT EXISTS bitmaps_ts ON bitmaps ("set", ts);
CREATE TABLE IF NOT EXISTS uid_map (
    game TEXT NOT NULL, uid TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (game, uid), UNIQUE (game, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (
    scope TEXT NOT NULL, id TEXT NOT NULL, seen_at INTEGER NOT NULL,
    PRIMARY KEY (scope, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_at ON seen (seen_at);
"""


def _canonical_key(key: Mapping[str, Any]) -> str:
    """The unique key string of a document: sorted JSON, integral floats as ints (1.0 == 1, as on MongoDB)."""
    norm = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in key.items()}
    return orjson.dumps(norm, option=orjson.OPT_SORT_KEYS).decode()


def _ts_range(sql: list[str], params: list[Any], ts_from: int | None, ts_to: int | None) -> None:
    """Add ts_from <= ts < ts_to (either bound optional) to a WHERE clause being built."""
    if ts_from is not None:
        sql.append("ts>=?")
        params.append(ts_from)
    if ts_to is not None:
        sql.append("ts<?")
        params.append(ts_to)


def _apply_ops(doc: dict[str, Any] | None, up: Upsert) -> dict[str, Any]:
    """MongoDB's $setOnInsert/$set/$inc/$max/$min applied to `doc` (None: insert). Pure."""
    new = doc is None
    out: dict[str, Any] = dict(up.key) if new else dict(doc)
    if new and up.set_on_insert:
        out.update(up.set_on_insert)
    if up.set:
        out.update(up.set)
    for f, by in (up.inc or {}).items():
        cur = out.get(f, 0)
        if isinstance(cur, bool) or not isinstance(cur, (int, float)):
            raise StoreError(f"cannot $inc non-numeric field {f!r}={cur!r} in {up.collection} {up.key}")
        out[f] = cur + by
    for op, fields in (("$max", up.max), ("$min", up.min)):
        for f, v in (fields or {}).items():
            if f not in out or out[f] is None:
                out[f] = v
                continue
            try:
                better = v > out[f] if op == "$max" else v < out[f]
            except TypeError:
                raise StoreError(f"cannot {op} {f!r}: {out[f]!r} vs {v!r} in {up.collection} {up.key}") from None
            if better:
                out[f] = v
    return out


class SQLiteStore(Store):
    """The embedded store. Thread-safe by one lock: SQLite has one writer anyway."""

    #: Every apply is one transaction (the crash-replay tests read this).
    atomic: bool = True
    #: How long a writer waits for another connection's lock before StoreUnavailable.
    busy_timeout_ms: int = 5000

    def __init__(self, path: str | Path, *, url: str | None = None, busy_timeout_ms: int | None = None,
                 clock: Callable[[], float] = time.time, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 part_bits: int = DEFAULT_PART_BITS) -> None:
        self.path = str(path)
        super().__init__(url or f"sqlite:///{self.path}", cache_bytes=cache_bytes, part_bits=part_bits)
        if busy_timeout_ms is not None:
            self.busy_timeout_ms = busy_timeout_ms
        self._clock = clock
        self._lock = threading.RLock()
        #: Cache updates of the open transaction, applied only if it commits.
        self._after: list[tuple[Head, int | None, Any]] = []
        self._uids_after: list[tuple[str, list[tuple[str, int]]]] = []
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._errors("open"):
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=self.busy_timeout_ms / 1000)
            self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")

    # -- plumbing ---------------------------------------------------------

    _driver_errors = sqlite3.Error

    def _store_error(self, what: str, e: Exception) -> StoreError:
        """Lock/IO/full -> StoreUnavailable (retry), others -> StoreError."""
        code = getattr(e, "sqlite_errorcode", None)
        text = str(e).lower()
        if (code is not None and code & 0xFF in _UNAVAILABLE_CODES) or \
                (isinstance(e, sqlite3.OperationalError) and any(t in text for t in _UNAVAILABLE_TEXT)):
            return StoreUnavailable(f"sqlite {what} on {self.path}: {e}")
        return StoreError(f"sqlite {what} on {self.path}: {e}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors("write"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # What a rolled-back transaction wrote does not exist: neither may the cache say so.
                self._after.clear()
                self._uids_after.clear()
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            after, self._after = self._after, []
            apply_after(self.cache, after)
            for game, pairs in self._uids_after:
                self._uids.put(game, pairs)
            self._uids_after.clear()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock, self._errors("read"):
            rows = self._db.execute(sql, params).fetchall()
        self.op_counts["reads"] += len(rows)
        return rows

    def _select_in(self, db: sqlite3.Connection, sql: str, params: Sequence[Any], values: Sequence[Any]) -> list[tuple]:
        """Rows of `sql` whose `{IN}` is `values`: one JSON array parameter where SQLite has json_each."""
        if _HAS_JSON:
            rows = db.execute(sql.replace("{IN}", "(SELECT value FROM json_each(?))"),
                              (*params, orjson.dumps(list(values)))).fetchall()
        else:
            rows = []
            for i in range(0, len(values), _CHUNK):
                chunk = values[i:i + _CHUNK]
                rows += db.execute(sql.replace("{IN}", f"({','.join('?' * len(chunk))})"),
                                   (*params, *chunk)).fetchall()
        self.op_counts["reads"] += len(rows)
        return rows

    # -- Store ------------------------------------------------------------

    def setup(self) -> None:
        """Create the tables and indexes (idempotent); migrate member rows of an older file into bitmaps."""
        with self._transaction() as db:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
        self.migrate()
        self.build_spans()

    def migrate(self, chunk: int = MIGRATE_CHUNK) -> int:
        """Move the member rows of a file written before bitmaps into bitmaps; returns the rows moved.

        `chunk` rows per transaction, taken in (set_id, member) order, unioned into
        the bitmaps and deleted in the same transaction: a crash in between leaves
        a consistent file, and the next open goes on where it stopped. Union is
        idempotent, so even a repeated chunk changes nothing.
        """
        tables = {r[0] for r in self._read("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        if "member_sets" not in tables:
            return 0
        moved = 0
        while True:
            with self._transaction() as db:
                rows = db.execute(
                    'SELECT s."set", s.game, s.area, s.plat, s.ts, s.sub, m.set_id, m.member FROM members m '
                    "JOIN member_sets s ON s.id = m.set_id ORDER BY m.set_id, m.member LIMIT ?",
                    (chunk,)).fetchall() if "members" in tables else []
                self.op_counts["reads"] += len(rows)
                if not rows:
                    db.execute("DROP VIEW IF EXISTS members_flat")
                    db.execute("DROP TABLE IF EXISTS members")
                    db.execute("DROP TABLE IF EXISTS member_sets")
                    log.info("%s: member rows migrated into bitmaps (%d rows)", self.path, moved)
                    return moved
                by_head: dict[Head, list[str]] = {}
                for *head, _, member in rows:
                    by_head.setdefault(tuple(head), []).append(str(member))
                self._write_sets(db, with_spans({h: split_ids(m) for h, m in by_head.items()}))
                last_id, last_member = rows[-1][6], rows[-1][7]
                db.execute("DELETE FROM members WHERE set_id < ? OR (set_id = ? AND member <= ?)",
                           (last_id, last_id, last_member))
                moved += len(rows)
                log.info("%s: migrating member rows into bitmaps: %d moved", self.path, moved)

    def _write_batch(self, batch: Batch, sets: Groups) -> None:
        """One transaction: members, upserts, member counts, seen marks; all or nothing."""
        # What needs no database is prepared before the write lock is taken: other
        # writers (bolts in other processes) wait while it is held.
        keyed = [(up.collection, _canonical_key(up.key), up) for up in batch.upserts]
        with self._transaction() as db:
            totals = self._write_sets(db, sets)
            keyed += [(up.collection, _canonical_key(up.key), up) for up in count_upserts(batch, totals)]
            self._write_docs(db, keyed)
            self._write_seen(db, batch)

    def _write_sets(self, db: sqlite3.Connection, sets: Groups) -> dict[Head, int]:
        """OR each set's new members into its stored parts (dictionary ids first, allocated in this
        transaction); {head: set size}."""
        parts = {head: self._parts(direct, self._dict_ids(db, head[1], names).values() if names else ())
                 for head, (direct, names) in sets.items()}
        return self._merge_sets(_SQLiteParts(self, db), parts, self._after)

    def _dict_ids(self, db: sqlite3.Connection, game: str, names: Sequence[str]) -> dict[str, int]:
        """Dictionary ids of `names` in `game`, new ones allocated (inside the write transaction:
        SQLite has one writer, so MAX(n) + 1 cannot race; UNIQUE (game, n) guards it anyway)."""
        out: dict[str, int] = {}
        missing = []
        for u in dict.fromkeys(names):      # the same uid may come from two adds of one set
            n = self._uids.id(game, u)
            if n is None:
                missing.append(u)
            else:
                out[u] = n
        if not missing:
            return out
        found = dict(self._select_in(db, "SELECT uid, n FROM uid_map WHERE game=? AND uid IN {IN}", (game,), missing))
        new = [u for u in missing if u not in found]
        if new:
            start = db.execute("SELECT COALESCE(MAX(n) + 1, ?) FROM uid_map WHERE game=?", (DICT_BASE, game)).fetchone()[0]
            if start + len(new) > ID_LIMIT:
                raise StoreError(f"uid_map of game {game!r} is full ({ID_LIMIT - DICT_BASE} ids)")
            db.executemany("INSERT INTO uid_map (game, uid, n) VALUES (?,?,?)",
                           [(game, u, start + i) for i, u in enumerate(new)])
            self.op_counts["writes"] += len(new)
            found.update((u, start + i) for i, u in enumerate(new))
        out.update(found)
        self._uids_after.append((game, list(found.items())))
        return out

    def _read_uid_map(self, game: str, by: str, values: Sequence[str] | Sequence[int]) -> list[tuple[str, int]]:
        column = {"uid": "uid", "n": "n"}[by]
        with self._lock, self._errors("read"):
            return self._select_in(self._db, f"SELECT uid, n FROM uid_map WHERE game=? AND {column} IN {{IN}}",
                                   (game,), values)

    def _write_seen(self, db: sqlite3.Connection, batch: Batch) -> None:
        now = int(self._clock())
        before = db.total_changes
        for scope, ids in batch.seen.items():
            if _HAS_JSON:  # one JSON array, as members
                db.execute("INSERT OR IGNORE INTO seen SELECT ?, value, ? FROM json_each(?)",
                           (scope, now, orjson.dumps([str(i) for i in ids])))
            else:
                db.executemany("INSERT OR IGNORE INTO seen VALUES (?,?,?)", [(scope, str(i), now) for i in ids])
        self.op_counts["writes"] += db.total_changes - before

    def _write_docs(self, db: sqlite3.Connection, keyed: Sequence[tuple[str, str, Upsert]]) -> None:
        """Apply (collection, canonical key, upsert) in order: read every touched document at once,
        update in memory, write back at once, skipping documents the upserts left as they were."""
        if not keyed:
            return
        docs: dict[tuple[str, str], dict[str, Any] | None] = {}
        raw: dict[tuple[str, str], str] = {}
        by_coll: dict[str, list[str]] = {}
        for coll, k, _ in keyed:
            if (coll, k) not in docs:
                docs[(coll, k)] = None
                by_coll.setdefault(coll, []).append(k)
        for coll, keys in by_coll.items():
            for k, doc in self._select_in(db, "SELECT k, doc FROM docs WHERE coll=? AND k IN {IN}", (coll,), keys):
                docs[(coll, k)] = orjson.loads(doc)
                raw[(coll, k)] = doc
        for coll, k, up in keyed:
            docs[(coll, k)] = _apply_ops(docs[(coll, k)], up)
        rows = []
        for (coll, k), doc in docs.items():
            text = orjson.dumps(doc).decode()
            if text != raw.get((coll, k)):
                rows.append((coll, k, *map(doc.get, _COLUMNS), text))
        db.executemany("INSERT OR REPLACE INTO docs VALUES (?,?,?,?,?,?,?)", rows)
        self.op_counts["writes"] += len(rows)

    def unseen(self, scope: str, ids: Sequence[str]) -> set[str]:
        """The ids `scope` has not marked seen (IN queries on the primary key)."""
        want = {str(i) for i in ids}
        if want:
            with self._lock, self._errors("read"):
                rows = self._select_in(self._db, "SELECT id FROM seen WHERE scope=? AND id IN {IN}", (scope,), list(want))
            want.difference_update(r[0] for r in rows)
        return want

    def _find(self, collection: str, where: dict[str, Any], *, ts_from: int | None, ts_to: int | None,
              order: Sequence[tuple[str, int]] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """Key columns are filtered in SQL (indexed); other fields, sort and limit in Python."""
        sql, params = ["coll=?"], [collection]
        rest = {}
        for f, v in where.items():
            if f in _COLUMNS and not isinstance(v, bool):
                sql.append(f"{f}=?")
                params.append(v)
            else:
                rest[f] = v
        _ts_range(sql, params, ts_from, ts_to)
        rows = self._read(f"SELECT doc FROM docs WHERE {' AND '.join(sql)}", params)
        docs = [orjson.loads(r[0]) for r in rows]
        # Columns compare by SQLite type (1 != '1', as on MongoDB); the rest like MongoDB too.
        return sort_docs([d for d in docs if matches(d, rest)], order, limit)

    def bitmap(self, key: MemberKey) -> BitMap:
        """The union of the set's parts (one indexed range read)."""
        rows = self._read(f"SELECT bits FROM bitmaps WHERE {_SET_WHERE}", key.head)
        return BitMap.union(*(deserialize(r[0]) for r in rows)) if rows else BitMap()

    def bitmap_between(self, set: str, game: str, area: str, plat: str,
                       ts_from: int, ts_to: int, sub: str | None = None) -> BitMap:
        """The union of the set's parts over periods in [ts_from, ts_to)."""
        sql = 'SELECT bits FROM bitmaps WHERE "set"=? AND game=? AND area=? AND plat=? AND ts>=? AND ts<?'
        params: list[Any] = [set, game, area, plat, ts_from, ts_to]
        if sub is not None:
            sql += " AND sub=?"
            params.append(sub)
        rows = self._read(sql, params)
        return BitMap.union(*(deserialize(r[0]) for r in rows)) if rows else BitMap()

    def count_members(self, key: MemberKey) -> int:
        """The sum of the parts' kept cardinalities (no blob is read)."""
        rows = self._read(f"SELECT n FROM bitmaps WHERE {_SET_WHERE}", key.head)
        return sum(r[0] for r in rows)

    def member_keys(self, set: str, *, game: str | None = None, area: str | None = None,
                    plat: str | None = None, ts_from: int | None = None,
                    ts_to: int | None = None) -> list[MemberKey]:
        """Period keys with members (index on (set, ts)), ordered by key."""
        sql, params = ['"set"=?'], [set]
        for f, v in (("game", game), ("area", area), ("plat", plat)):
            if v is not None:
                sql.append(f"{f}=?")
                params.append(v)
        _ts_range(sql, params, ts_from, ts_to)
        rows = self._read(f'SELECT DISTINCT "set", game, area, plat, ts, sub FROM bitmaps WHERE {" AND ".join(sql)} '
                          'ORDER BY ts, game, area, plat, sub', params)
        return [MemberKey(*r) for r in rows]

    #: Seen marks deleted per transaction by purge_seen: short write locks, bolts keep flushing.
    purge_chunk: int = 20000

    def purge_seen(self, older_than: int) -> int:
        """Delete seen marks with seen_at < older_than, in chunks (index on seen_at)."""
        total = 0
        while True:
            with self._transaction() as db:
                n = db.execute("DELETE FROM seen WHERE (scope, id) IN (SELECT scope, id FROM seen "
                               "WHERE seen_at < ? LIMIT ?)", (int(older_than), self.purge_chunk)).rowcount
            total += n
            if n < self.purge_chunk:
                return total

    def close(self) -> None:
        """Close the connection (checkpoints the WAL)."""
        with self._lock:
            self._db.close()


class _SQLiteParts:
    """merge_into's view of the bitmaps table, inside the open write transaction."""

    def __init__(self, store: SQLiteStore, db: sqlite3.Connection) -> None:
        self.store, self.db = store, db

    def part_versions(self, head: Head) -> dict[int, tuple[int, int]]:
        rows = self.db.execute(f"SELECT part, n, v FROM bitmaps WHERE {_SET_WHERE}", head).fetchall()
        self.store.op_counts["reads"] += len(rows)
        return {p: (n, v) for p, n, v in rows}

    def read_part(self, head: Head, part: int) -> CachedPart | None:
        row = self.db.execute(f"SELECT bits, v FROM bitmaps WHERE {_SET_WHERE} AND part=?", (*head, part)).fetchone()
        if row is None:
            return None
        self.store.op_counts["reads"] += 1
        return CachedPart(deserialize(row[0]), row[1], len(row[0]))

    def insert_part(self, head: Head, part: int, blob: bytes, n: int) -> bool:
        cur = self.db.execute('INSERT OR IGNORE INTO bitmaps ("set", game, area, plat, ts, sub, part, n, v, bits) '
                              "VALUES (?,?,?,?,?,?,?,?,1,?)", (*head, part, n, blob))
        self.store.op_counts["writes"] += cur.rowcount
        return cur.rowcount == 1

    def update_part(self, head: Head, part: int, blob: bytes, n: int, v: int) -> bool:
        cur = self.db.execute(f"UPDATE bitmaps SET bits=?, n=?, v=v+1 WHERE {_SET_WHERE} AND part=? AND v=?",
                              (blob, n, *head, part, v))
        self.store.op_counts["writes"] += cur.rowcount
        return cur.rowcount == 1
