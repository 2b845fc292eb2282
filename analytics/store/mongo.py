"""MongoStore: the production store on MongoDB (the only module that imports pymongo).

Why this layout (see docs/stores.md):

* one collection per stat collection, named as the bolt names it; a unique
  index on its key fields (game, area, plat, ts first: it then serves the
  dashboard's queries too), created lazily the first time a key shape is written;
* ``members``: one document per (set, game, area, plat, ts, sub, member), unique;
* ``member_sets``: one document per period key that has members (for `member_keys`);
* ``seen``: (scope, id) unique, ``seen_at`` under a TTL index (the dedupe horizon);
  marks are inserted, not upserted (`unseen` said they are new; a mark that is
  there after all makes the batch go again with upserts).

Every index costs each write on the server (SecantusDB rewrites them all on an
update), so a collection gets no index its queries do not need; `$in` lists are
short because SecantusDB matches each document against the whole list.

`apply` runs in a transaction when the server is a replica set (hello reports
setName); otherwise in the order members, upserts, counts, seen marks, which
leaves one documented window: a crash after the `$inc` upserts and before the
seen marks makes a replay count those records twice.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

import pymongo
from pymongo import ASCENDING, UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError

from analytics.store.base import (KEY_FIELDS, Batch, MemberKey, QueryError, Store, StoreError,
                                  StoreUnavailable, Upsert, check_sort, check_upsert, check_where)

__all__ = ["MongoStore"]

log = logging.getLogger(__name__)

_MEMBER_HEAD = ("set", "game", "area", "plat", "ts", "sub")
_DUPLICATE_KEY = 11000
_INDEX_OPTIONS_CONFLICT = 85
_INDEX_NOT_FOUND = 27
#: Ids per `$in` query in `unseen`: SecantusDB matches each document found against the
#: whole list, so a query costs O(found x list); 50 is the fastest there (measured: 7,300
#: ids/s against 1,000/s with 1,000 a query) and costs a real mongod only more round trips.
_CHUNK = 50
DEFAULT_SERVER_SELECTION_MS = 5000


def _head(k: MemberKey) -> dict[str, Any]:
    return {"set": k.set, "game": k.game, "area": k.area, "plat": k.plat, "ts": k.ts, "sub": k.sub}


def _update_doc(up: Upsert) -> dict[str, Any]:
    """The MongoDB update document of an Upsert (fields already checked disjoint)."""
    doc = {op: dict(v) for op, v in (("$inc", up.inc), ("$set", up.set), ("$setOnInsert", up.set_on_insert),
                                    ("$max", up.max), ("$min", up.min)) if v}
    # An upsert with no operator fields still creates the document with its key.
    return doc or {"$setOnInsert": dict(up.key)}


class MongoStore(Store):
    """Stats on MongoDB. Pass a pymongo client and a database name, or use from_url."""

    def __init__(self, client: Any, database: str = "analytics", *, url: str | None = None,
                 seen_ttl_seconds: int = 90 * 86400, owns_client: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.db = client[database]
        self.url = url or f"mongodb:///{database}"
        #: TTL of the seen marks (the dedupe horizon); MongoDB deletes older ones itself.
        self.seen_ttl_seconds = seen_ttl_seconds
        self._owns_client = owns_client
        self._clock = clock
        self._replica_set: bool | None = None
        self._indexed: set[tuple[str, tuple[str, ...]]] = set()

    @classmethod
    def from_url(cls, url: str, *, seen_ttl_seconds: int = 90 * 86400) -> "MongoStore":
        """A store over a new MongoClient; serverSelectionTimeoutMS defaults to 5000 unless the URL sets it."""
        parts = urlsplit(url)
        database = parts.path.lstrip("/") or "analytics"
        options = {k.lower() for k, _ in parse_qsl(parts.query)}
        kwargs: dict[str, Any] = {}
        if "serverselectiontimeoutms" not in options:
            kwargs["serverSelectionTimeoutMS"] = DEFAULT_SERVER_SELECTION_MS
        try:
            client = pymongo.MongoClient(url, **kwargs)
        except PyMongoError as e:       # bad URL options; connecting itself is lazy
            raise StoreError(f"bad MongoDB URL {url!r}: {e}") from e
        return cls(client, database, url=url, seen_ttl_seconds=seen_ttl_seconds)

    # -- plumbing ---------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Connection trouble -> StoreUnavailable (pymongo reconnects on the next call); else StoreError."""
        try:
            yield
        except StoreError:
            raise
        except ConnectionFailure as e:  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
            raise StoreUnavailable(f"mongodb {what}: {e}") from e
        except PyMongoError as e:
            raise StoreError(f"mongodb {what}: {e}") from e

    @property
    def atomic(self) -> bool:
        """Whether `apply` runs in a transaction: only when the server is a replica set."""
        if self._replica_set is None:
            with self._errors("hello"):
                hello = self.client.admin.command("hello")
            self._replica_set = bool(hello.get("setName"))
            log.info("mongodb %s: %s", self.db.name,
                     "replica set, batches in transactions" if self._replica_set else
                     "standalone, batches without transactions (see docs/stores.md)")
        return self._replica_set

    def _bulk(self, coll: str, ops: list[UpdateOne], session: Any, *, retry_duplicates: bool) -> None:
        """Unordered bulk write; duplicate-key errors from concurrent upserts are not failures.

        A member/seen upsert that lost the race is simply present already; a stat
        upsert that lost it is retried once (the document exists now, so it updates).
        """
        if not ops:
            return
        try:
            self.db[coll].bulk_write(ops, ordered=False, session=session)
        except BulkWriteError as e:
            errors = e.details.get("writeErrors", [])
            others = [x for x in errors if x.get("code") != _DUPLICATE_KEY]
            if others:
                raise StoreError(f"mongodb write to {coll}: {others[0].get('errmsg')} "
                                 f"({len(others)} failed)") from e
            if retry_duplicates:
                self.db[coll].bulk_write([ops[x["index"]] for x in errors], ordered=False, session=session)

    def _ensure_doc_indexes(self, coll: str, key: Mapping[str, Any]) -> None:
        """Create the unique key index of this key shape, and the query indexes, once per process."""
        shape = tuple(sorted(key))
        if (coll, shape) in self._indexed:
            return
        c = self.db[coll]
        fields = _key_index_fields(key)
        c.create_index([(f, ASCENDING) for f in fields], unique=True, name="key_" + "_".join(fields))
        if (coll, ()) not in self._indexed:
            if fields[:len(KEY_FIELDS)] != KEY_FIELDS:  # else the key index serves these queries
                c.create_index([(f, ASCENDING) for f in KEY_FIELDS], name="game_area_plat_ts")
            c.create_index([("ts", ASCENDING)], name="ts")
            self._drop_superseded_indexes(c, fields)
            self._indexed.add((coll, ()))
        self._indexed.add((coll, shape))

    # -- Store ------------------------------------------------------------

    def setup(self) -> None:
        """Indexes of members, member_sets and seen (stat collections get theirs lazily)."""
        with self._errors("setup"):
            self.db.members.create_index([(f, ASCENDING) for f in (*_MEMBER_HEAD, "member")],
                                         unique=True, name="member_key")
            self.db.member_sets.create_index([(f, ASCENDING) for f in _MEMBER_HEAD], unique=True, name="set_key")
            self.db.member_sets.create_index([("set", ASCENDING), ("ts", ASCENDING)], name="set_ts")
            self.db.seen.create_index([("scope", ASCENDING), ("id", ASCENDING)], unique=True, name="scope_id")
            try:
                self.db.seen.create_index("seen_at", name="seen_at_ttl", expireAfterSeconds=self.seen_ttl_seconds)
            except OperationFailure as e:
                if e.code != _INDEX_OPTIONS_CONFLICT:
                    raise
                log.info("changing the seen TTL to %ss", self.seen_ttl_seconds)
                self.db.command("collMod", "seen", index={"keyPattern": {"seen_at": 1},
                                                          "expireAfterSeconds": self.seen_ttl_seconds})

    def apply(self, batch: Batch) -> None:
        """Members, upserts, member counts, seen marks: in one transaction on a replica set."""
        for up in batch.upserts:
            check_upsert(up)
        for add in batch.members:
            if add.count_into:
                check_upsert(Upsert(add.count_into[0], add.count_into[1], set={add.count_into[2]: 0}))
        if not batch:
            return
        with self._errors("apply"):
            for up in batch.upserts:        # index builds cannot run inside a transaction
                self._ensure_doc_indexes(up.collection, up.key)
            for add in batch.members:
                if add.count_into:
                    self._ensure_doc_indexes(add.count_into[0], add.count_into[1])
            if self.atomic:
                with self.client.start_session() as s:
                    try:
                        s.with_transaction(lambda s: self._write(batch, s))
                    except _SeenAlready:    # a mark was there after all: it aborted the transaction
                        s.with_transaction(lambda s: self._write(batch, s, insert_seen=False))
            else:
                self._write(batch, None)

    def _write(self, batch: Batch, session: Any, *, insert_seen: bool = True) -> None:
        self._write_members(batch, session)
        self._write_upserts(batch.upserts, session)
        self._write_counts(batch, session)
        if insert_seen:
            self._write_seen(batch, session)
        else:
            self._upsert_seen(batch, session)

    def _write_members(self, batch: Batch, session: Any) -> None:
        ops, sets = [], []
        for add in batch.members:
            head = _head(add.key)
            sets.append(UpdateOne(head, {"$setOnInsert": {"set": add.key.set}}, upsert=True))
            ops.extend(UpdateOne({**head, "member": str(m)}, {"$setOnInsert": {"member": str(m)}}, upsert=True)
                       for m in add.members)
        self._bulk("members", ops, session, retry_duplicates=False)
        self._bulk("member_sets", sets, session, retry_duplicates=False)

    def _write_upserts(self, upserts: list[Upsert], session: Any) -> None:
        by_coll: dict[str, list[UpdateOne]] = defaultdict(list)
        for up in upserts:
            by_coll[up.collection].append(UpdateOne(up.key, _update_doc(up), upsert=True))
        for coll, ops in by_coll.items():
            self._bulk(coll, ops, session, retry_duplicates=True)

    def _write_counts(self, batch: Batch, session: Any) -> None:
        ups = []
        for add in batch.members:
            if add.count_into:
                coll, doc_key, fld = add.count_into
                n = self.db.members.count_documents(_head(add.key), session=session)
                ups.append(Upsert(coll, dict(doc_key), set={fld: n}))
        self._write_upserts(ups, session)

    def _upsert_seen(self, batch: Batch, session: Any) -> None:
        """Seen marks as upserts: the fallback of `_write_seen` when some are there already."""
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        ops = [UpdateOne({"scope": scope, "id": str(i)}, {"$setOnInsert": {"seen_at": now}}, upsert=True)
               for scope, ids in batch.seen.items() for i in ids]
        self._bulk("seen", ops, session, retry_duplicates=False)

    def unseen(self, scope: str, ids: Sequence[str]) -> set[str]:
        """The ids `scope` has not marked seen (chunked `$in` on the unique index)."""
        want = {str(i) for i in ids}
        todo = list(want)
        with self._errors("unseen"):
            for i in range(0, len(todo), _CHUNK):
                found = self.db.seen.find({"scope": scope, "id": {"$in": todo[i:i + _CHUNK]}},
                                          {"id": 1, "_id": 0})
                want.difference_update(d["id"] for d in found)
        return want

    def find(self, collection: str, where: Mapping[str, Any] | None = None, *,
             ts_from: int | None = None, ts_to: int | None = None,
             sort: Sequence[str] = ("ts",), limit: int | None = None) -> list[dict[str, Any]]:
        """Plain equality on checked fields, ts range, sort, limit; documents without _id."""
        flt: dict[str, Any] = check_where(where)
        order = check_sort(sort)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise QueryError(f"bad limit {limit!r}")
        if limit == 0:                  # MongoDB reads limit(0) as "no limit"
            return []
        rng: dict[str, Any] = {}
        if ts_from is not None:
            rng["$gte"] = ts_from
        if ts_to is not None:
            rng["$lt"] = ts_to
        if rng:
            flt["ts"] = {"$eq": flt["ts"], **rng} if "ts" in flt else rng
        with self._errors("find"):
            cur = self.db[collection].find(flt, {"_id": 0})
            if order:
                cur = cur.sort(order)
            if limit is not None:
                cur = cur.limit(limit)
            return list(cur)

    def members(self, key: MemberKey) -> set[str]:
        """The members of one period set."""
        with self._errors("members"):
            return {d["member"] for d in self.db.members.find(_head(key), {"member": 1, "_id": 0})}

    def members_between(self, set: str, game: str, area: str, plat: str,
                        ts_from: int, ts_to: int, sub: str | None = None) -> set[str]:
        """Distinct members over [ts_from, ts_to); a find, not distinct(), so no 16 MB result limit."""
        flt: dict[str, Any] = {"set": set, "game": game, "area": area, "plat": plat,
                               "ts": {"$gte": ts_from, "$lt": ts_to}}
        if sub is not None:
            flt["sub"] = sub
        with self._errors("members_between"):
            return {d["member"] for d in self.db.members.find(flt, {"member": 1, "_id": 0})}

    def count_members(self, key: MemberKey) -> int:
        """count_documents on the unique index prefix."""
        with self._errors("count_members"):
            return self.db.members.count_documents(_head(key))

    def member_keys(self, set: str, *, game: str | None = None, area: str | None = None,
                    plat: str | None = None, ts_from: int | None = None,
                    ts_to: int | None = None) -> list[MemberKey]:
        """Period keys with members, from the small member_sets collection, ordered by key."""
        flt: dict[str, Any] = {"set": set}
        for f, v in (("game", game), ("area", area), ("plat", plat)):
            if v is not None:
                flt[f] = v
        rng = {op: v for op, v in (("$gte", ts_from), ("$lt", ts_to)) if v is not None}
        if rng:
            flt["ts"] = rng
        with self._errors("member_keys"):
            cur = self.db.member_sets.find(flt, {"_id": 0}).sort(
                [("ts", ASCENDING), ("game", ASCENDING), ("area", ASCENDING), ("plat", ASCENDING),
                 ("sub", ASCENDING)])
            return [MemberKey(**{f: d[f] for f in _MEMBER_HEAD}) for d in cur]

    def purge_seen(self, older_than: int) -> int:
        """Delete marks older than `older_than` now (the TTL index does it too, eventually)."""
        cutoff = datetime.fromtimestamp(older_than, timezone.utc)
        with self._errors("purge_seen"):
            return self.db.seen.delete_many({"seen_at": {"$lt": cutoff}}).deleted_count

    def close(self) -> None:
        """Close the client if this store created it."""
        if self._owns_client:
            self.client.close()

    # -- write shapes (see the module docstring) ----------------------------

    def _write_seen(self, batch: Batch, session: Any) -> None:
        """Seen marks as one unordered insert: 2x faster than upserts on SecantusDB.

        `unseen` found these ids new, so a duplicate means another writer marked
        the same id meanwhile. Outside a transaction the other marks still go in
        (unordered) and the duplicate is already there; inside one the duplicate
        aborted the transaction, so `_SeenAlready` makes `apply` run it again with
        upserts (`_upsert_seen`).
        """
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        marks = [{"scope": scope, "id": str(i), "seen_at": now} for scope, ids in batch.seen.items() for i in ids]
        if not marks:
            return
        try:
            self.db.seen.insert_many(marks, ordered=False, session=session)
        except BulkWriteError as e:
            errors = e.details.get("writeErrors", [])
            others = [x for x in errors if x.get("code") != _DUPLICATE_KEY]
            if others:
                raise StoreError(f"mongodb write to seen: {others[0].get('errmsg')} ({len(others)} failed)") from e
            if session is not None:
                raise _SeenAlready() from e

    def _drop_superseded_indexes(self, c: Any, fields: tuple[str, ...]) -> None:
        """Drop what older versions created that the key index now makes redundant.

        Before, the unique key index had its fields sorted (key_area_game_plat_ts) and a
        separate (game, area, plat, ts) index served the queries: two more indexes to
        maintain on every write. The new key index is in place before they go.
        """
        old_key = "key_" + "_".join(sorted(fields))
        drop = [old_key] if old_key != "key_" + "_".join(fields) else []
        if fields[:len(KEY_FIELDS)] == KEY_FIELDS:
            drop.append("game_area_plat_ts")
        present = c.index_information()
        for name in drop:
            if name in present:
                try:
                    c.drop_index(name)
                    log.info("mongodb %s: dropped index %s (superseded)", c.name, name)
                except OperationFailure as e:
                    if e.code != _INDEX_NOT_FOUND:      # another process dropped it first
                        raise


class _SeenAlready(Exception):
    """A seen mark inserted inside a transaction was there already (the transaction is aborted)."""


def _key_index_fields(key: Mapping[str, Any]) -> tuple[str, ...]:
    """The unique index of a key: game, area, plat, ts (those present, in this order), then the rest sorted."""
    head = tuple(f for f in KEY_FIELDS if f in key)
    return head + tuple(sorted(f for f in key if f not in KEY_FIELDS))
