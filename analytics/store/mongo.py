"""MongoStore: the production store on MongoDB (the only module that imports pymongo).

Why this layout (see docs/stores.md):

* one collection per stat collection, named as the bolt names it; a unique
  index on its key fields (game, area, plat, ts first: it then serves the
  dashboard's queries too), created lazily the first time a key shape is written;
* ``bitmaps``: one document per period set part (set, game, area, plat, ts, sub, part),
  unique: ``bits`` the roaring bitmap of its member ids (BinData, portable format),
  ``n`` its cardinality, ``v`` its version (compare-and-swap between writers);
* ``uid_map``: (game, uid) <-> n, the dictionary of uids that are not small decimals
  (unique both ways), ``uid_seq``: the next dictionary id per game;
* ``seen``: (scope, id) unique, ``seen_at`` under a TTL index (the dedupe horizon);
  marks are inserted, not upserted (`unseen` said they are new; a mark that is
  there after all makes the batch go again with upserts).

Every index costs each write on the server (SecantusDB rewrites them all on an
update), so a collection gets no index its queries do not need; `$in` lists are
short because SecantusDB matches each document against the whole list.

A database written before bitmaps (collections ``members`` + ``member_sets``) is
migrated by `setup`, in chunks, idempotently (see `migrate`).

`apply` runs in a transaction when the server is a replica set (hello reports
setName); otherwise in the order members, upserts, counts, seen marks, which
leaves one documented window: a crash after the `$inc` upserts and before the
seen marks makes a replay count those records twice.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import pymongo
from bson import Binary
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.write_concern import WriteConcern

from analytics.config import redact
from analytics.store.base import KEY_FIELDS, Batch, MemberKey, Store, StoreError, StoreUnavailable, Upsert
from analytics.store.batch import Groups, count_upserts
from analytics.store.bitmaps import (DEFAULT_CACHE_BYTES, DEFAULT_PART_BITS, DICT_BASE, ID_LIMIT, MIGRATE_CHUNK, BitMap,
                                     CachedPart, Head, apply_after, deserialize)

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


def _head_doc(head: Head) -> dict[str, Any]:
    return dict(zip(_MEMBER_HEAD, head))


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
                 clock: Callable[[], float] = time.time, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 part_bits: int = DEFAULT_PART_BITS) -> None:
        super().__init__(url or f"mongodb:///{database}", cache_bytes=cache_bytes, part_bits=part_bits)
        self.client = client
        self.db = client[database]
        #: TTL of the seen marks (the dedupe horizon); MongoDB deletes older ones itself.
        self.seen_ttl_seconds = seen_ttl_seconds
        self._owns_client = owns_client
        self._clock = clock
        self._replica_set: bool | None = None
        self._indexed: set[tuple[str, tuple[str, ...]]] = set()

    @classmethod
    def from_url(cls, url: str, *, seen_ttl_seconds: int = 90 * 86400) -> "MongoStore":
        """A store over a new MongoClient; serverSelectionTimeoutMS defaults to 5000 unless the URL sets it."""
        from analytics.store import SET_OPTIONS, set_options
        parts = urlsplit(url)
        database = parts.path.lstrip("/") or "analytics"
        ours = set_options(url, {k: v for k, v in parse_qs(parts.query).items() if k in SET_OPTIONS})
        # Our own options (cache_bytes, part_bits) are not pymongo's: the client gets the URL without them.
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in SET_OPTIONS]
        client_url = urlunsplit(parts._replace(query=urlencode(query)))
        options = {k.lower() for k, _ in query}
        kwargs: dict[str, Any] = {}
        if "serverselectiontimeoutms" not in options:
            kwargs["serverSelectionTimeoutMS"] = DEFAULT_SERVER_SELECTION_MS
        try:
            client = pymongo.MongoClient(client_url, **kwargs)
        except PyMongoError as e:       # bad URL options; connecting itself is lazy
            raise StoreError(redact(f"bad MongoDB URL {url!r}: {e}")) from e
        return cls(client, database, url=url, seen_ttl_seconds=seen_ttl_seconds, **ours)

    # -- plumbing ---------------------------------------------------------

    _driver_errors = PyMongoError

    def _store_error(self, what: str, e: Exception) -> StoreError:
        """Connection trouble -> StoreUnavailable (pymongo reconnects on the next call); else StoreError."""
        if isinstance(e, ConnectionFailure):    # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
            return StoreUnavailable(f"mongodb {what}: {e}")
        return StoreError(f"mongodb {what}: {e}")

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
            res = self.db[coll].bulk_write(ops, ordered=False, session=session)
            self.op_counts["writes"] += res.upserted_count + res.modified_count
        except BulkWriteError as e:
            errors = self._duplicates_only(coll, e)
            if retry_duplicates:
                res = self.db[coll].bulk_write([ops[x["index"]] for x in errors], ordered=False, session=session)
                self.op_counts["writes"] += res.upserted_count + res.modified_count

    def _duplicates_only(self, coll: str, e: BulkWriteError) -> list[dict[str, Any]]:
        """An unordered bulk write that failed in part: count what went in, raise StoreError unless
        every failure is a duplicate key (a concurrent writer's), return those duplicates."""
        self.op_counts["writes"] += sum(e.details.get(n, 0) for n in ("nInserted", "nUpserted", "nModified"))
        errors = e.details.get("writeErrors", [])
        others = [x for x in errors if x.get("code") != _DUPLICATE_KEY]
        if others:
            raise StoreError(f"mongodb write to {coll}: {others[0].get('errmsg')} ({len(others)} failed)") from e
        return errors

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
            # The dashboard's "one game (one area), all plats, between two days": a range right after
            # the equalities. SecantusDB uses an index only so (else a collection scan); mongod skips
            # through the key index but reads fewer keys here. Indexed fields never change on update.
            for name, idx in _QUERY_INDEXES.items():
                c.create_index([(f, ASCENDING) for f in idx], name=name)
            self._drop_superseded_indexes(c, fields)
            self._indexed.add((coll, ()))
        self._indexed.add((coll, shape))

    # -- Store ------------------------------------------------------------

    def setup(self) -> None:
        """Indexes of bitmaps, uid_map and seen (stat collections get theirs lazily); migrate old member documents."""
        with self._errors("setup"):
            self.db.bitmaps.create_index([(f, ASCENDING) for f in (*_MEMBER_HEAD, "part")], unique=True,
                                         name="set_key_part")
            self.db.bitmaps.create_index([("set", ASCENDING), ("ts", ASCENDING)], name="set_ts")
            self.db.uid_map.create_index([("game", ASCENDING), ("uid", ASCENDING)], unique=True, name="game_uid")
            self.db.uid_map.create_index([("game", ASCENDING), ("n", ASCENDING)], unique=True, name="game_n")
            self.db.seen.create_index([("scope", ASCENDING), ("id", ASCENDING)], unique=True, name="scope_id")
            try:
                self.db.seen.create_index("seen_at", name="seen_at_ttl", expireAfterSeconds=self.seen_ttl_seconds)
            except OperationFailure as e:
                if e.code != _INDEX_OPTIONS_CONFLICT:
                    raise
                log.info("changing the seen TTL to %ss", self.seen_ttl_seconds)
                self.db.command("collMod", "seen", index={"keyPattern": {"seen_at": 1},
                                                          "expireAfterSeconds": self.seen_ttl_seconds})
        self.migrate()
        self.build_spans()

    def migrate(self, chunk: int = MIGRATE_CHUNK) -> int:
        """Move the member documents of a database written before bitmaps into bitmaps; returns how many.

        `chunk` documents at a time (in the old unique index's order): unioned into
        the bitmaps, then deleted. A crash in between repeats a union, which
        changes nothing, so the next `setup` simply goes on; when `members` is
        empty, it and `member_sets` are dropped.
        """
        moved = 0
        with self._errors("migrate"):
            names = set(self.db.list_collection_names())
            if "members" not in names and "member_sets" not in names:
                return 0
            order = [(f, ASCENDING) for f in (*_MEMBER_HEAD, "member")]
            while True:
                docs = list(self.db.members.find({}, {f: 1 for f in (*_MEMBER_HEAD, "member")}).sort(order).limit(chunk))
                self.op_counts["reads"] += len(docs)
                if not docs:
                    self.db.drop_collection("members")
                    self.db.drop_collection("member_sets")
                    log.info("%s: member documents migrated into bitmaps (%d)", self.db.name, moved)
                    return moved
                by_head: dict[Head, list[str]] = {}
                for d in docs:
                    by_head.setdefault(tuple(d[f] for f in _MEMBER_HEAD), []).append(str(d["member"]))
                batch = Batch()
                for head, members in by_head.items():
                    batch.add_members(MemberKey(*head), members)
                self.apply(batch)
                ids = [d["_id"] for d in docs]
                for i in range(0, len(ids), 10000):
                    self.db.members.delete_many({"_id": {"$in": ids[i:i + 10000]}})
                moved += len(docs)
                log.info("%s: migrating member documents into bitmaps: %d moved", self.db.name, moved)

    def _write_batch(self, batch: Batch, sets: Groups) -> None:
        """Members, upserts, member counts, seen marks: in one transaction on a replica set."""
        with self._errors("apply"):
            for up in batch.upserts:        # index builds cannot run inside a transaction
                self._ensure_doc_indexes(up.collection, up.key)
            for add in batch.members:
                if add.count_into:
                    self._ensure_doc_indexes(add.count_into[0], add.count_into[1])
            # Dictionary ids first, outside the transaction: they are idempotent and may be
            # contended (a duplicate key would abort a transaction); gaps in n are fine.
            parts = {head: self._parts(direct, self._dict_ids(head[1], names).values() if names else ())
                     for head, (direct, names) in sets.items()}
            after: list[tuple[Head, int | None, Any]] = []
            if self.atomic:
                def txn(s: Any, insert_seen: bool = True) -> None:
                    after.clear()           # with_transaction may run this again after a conflict
                    self._write(batch, parts, after, s, insert_seen=insert_seen)
                with self.client.start_session() as s:
                    try:
                        s.with_transaction(txn)
                    except _SeenAlready:    # a mark was there after all: it aborted the transaction
                        s.with_transaction(lambda s: txn(s, insert_seen=False))
            else:
                self._write(batch, parts, after, None)
            apply_after(self.cache, after)

    def _write(self, batch: Batch, parts: Mapping[Head, dict[int, BitMap]], after: list, session: Any,
               *, insert_seen: bool = True) -> None:
        totals = self._merge_sets(_MongoParts(self, session), parts, after)
        self._write_upserts(_combined([*batch.upserts, *count_upserts(batch, totals)]), session)
        if insert_seen:
            self._write_seen(batch, session)
        else:
            self._upsert_seen(batch, session)

    def _dict_ids(self, game: str, names: Sequence[str]) -> dict[str, int]:
        """Dictionary ids of `names`, new ones allocated: a block of n from uid_seq, insert-if-absent,
        then read back (a concurrent writer's id for the same uid wins; the unused n is a gap)."""
        out = {u: n for u in names if (n := self._uids.id(game, u)) is not None}
        missing = sorted({u for u in names if u not in out})
        if not missing:
            return out
        found = self._uid_ids(game, missing)
        new = [u for u in missing if u not in found]
        if new:
            seq = None
            for attempt in range(3):
                try:
                    seq = self._durable("uid_seq").find_one_and_update({"_id": game}, {"$inc": {"next": len(new)}},
                                                              upsert=True, return_document=ReturnDocument.AFTER)
                except DuplicateKeyError:   # two first writers of one game: the loser's retry updates
                    if attempt == 2:
                        raise
                    continue
                if seq is not None:
                    break
                # An upsert racing another first writer came back without a document on a
                # wire-protocol server (seen on SecantusDB): the retry updates the winner's.
            if seq is None:
                raise StoreError(f"uid_seq of game {game!r}: no document after an upsert")
            self.op_counts["writes"] += 1
            start = DICT_BASE + seq["next"] - len(new)
            if start + len(new) > ID_LIMIT:
                raise StoreError(f"uid_map of game {game!r} is full ({ID_LIMIT - DICT_BASE} ids)")
            try:
                res = self._durable("uid_map").insert_many([{"game": game, "uid": u, "n": start + i} for i, u in enumerate(new)],
                                                  ordered=False)
                self.op_counts["writes"] += len(res.inserted_ids)
            except BulkWriteError as e:
                self._duplicates_only("uid_map", e)
            found.update(self._uid_ids(game, new))
            if len(found) < len(missing):
                raise StoreError(f"uid_map of game {game!r}: {len(missing) - len(found)} uid(s) not stored")
        out.update(found)
        return out

    def _read_uid_map(self, game: str, by: str, values: Sequence[str] | Sequence[int]) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        with self._errors("uid_map"):
            for i in range(0, len(values), _CHUNK):
                found += [(d["uid"], d["n"]) for d in self.db.uid_map.find(
                    {"game": game, by: {"$in": list(values[i:i + _CHUNK])}}, {"uid": 1, "n": 1, "_id": 0})]
        self.op_counts["reads"] += len(found)
        return found

    def _write_upserts(self, upserts: list[Upsert], session: Any) -> None:
        by_coll: dict[str, list[UpdateOne]] = defaultdict(list)
        for up in upserts:
            by_coll[up.collection].append(UpdateOne(up.key, _update_doc(up), upsert=True))
        for coll, ops in by_coll.items():
            self._bulk(coll, ops, session, retry_duplicates=True)

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
                found = [d["id"] for d in self.db.seen.find({"scope": scope, "id": {"$in": todo[i:i + _CHUNK]}},
                                                            {"id": 1, "_id": 0})]
                self.op_counts["reads"] += len(found)
                want.difference_update(found)
        return want

    def _find(self, collection: str, where: dict[str, Any], *, ts_from: int | None, ts_to: int | None,
              order: Sequence[tuple[str, int]] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """Plain equality on checked fields, ts range, sort, limit (never 0: MongoDB reads limit(0)
        as "no limit"; `find` answers it); documents without _id."""
        flt = dict(where)
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
                cur = cur.sort(list(order))
            if limit is not None:
                cur = cur.limit(limit)
            docs = list(cur)
        self.op_counts["reads"] += len(docs)
        return docs

    def _bits(self, flt: dict[str, Any]) -> BitMap:
        with self._errors("bitmaps"):
            docs = list(self.db.bitmaps.find(flt, {"bits": 1, "_id": 0}))
        self.op_counts["reads"] += len(docs)
        return BitMap.union(*(deserialize(d["bits"]) for d in docs)) if docs else BitMap()

    def bitmap(self, key: MemberKey) -> BitMap:
        """The union of the set's part documents."""
        return self._bits(_head_doc(key.head))

    def bitmap_between(self, set: str, game: str, area: str, plat: str,
                       ts_from: int, ts_to: int, sub: str | None = None) -> BitMap:
        """The union of the set's parts over [ts_from, ts_to) (index set_key_part)."""
        flt: dict[str, Any] = {"set": set, "game": game, "area": area, "plat": plat,
                               "ts": {"$gte": ts_from, "$lt": ts_to}}
        if sub is not None:
            flt["sub"] = sub
        return self._bits(flt)

    def count_members(self, key: MemberKey) -> int:
        """The sum of the parts' kept cardinalities (no blob is read)."""
        with self._errors("count_members"):
            docs = list(self.db.bitmaps.find(_head_doc(key.head), {"n": 1, "_id": 0}))
        self.op_counts["reads"] += len(docs)
        return sum(d["n"] for d in docs)

    def member_keys(self, set: str, *, game: str | None = None, area: str | None = None,
                    plat: str | None = None, ts_from: int | None = None,
                    ts_to: int | None = None) -> list[MemberKey]:
        """Period keys with members (index set_ts), ordered by key; parts of one set count once."""
        flt: dict[str, Any] = {"set": set}
        given = {f: v for f, v in (("game", game), ("area", area), ("plat", plat)) if v is not None}
        rng = {op: v for op, v in (("$gte", ts_from), ("$lt", ts_to)) if v is not None}
        # A ts range after only some of game/area/plat fits no index prefix (SecantusDB then scans the
        # collection): ask by (set, ts) through set_ts and keep the server's keys here.
        local = given if rng and len(given) < 3 else {}
        flt.update({f: v for f, v in given.items() if f not in local})
        if rng:
            flt["ts"] = rng
        with self._errors("member_keys"):
            docs = [d for d in self.db.bitmaps.find(flt, {f: 1 for f in _MEMBER_HEAD} | {"_id": 0})
                    if all(d[f] == v for f, v in local.items())]
        self.op_counts["reads"] += len(docs)
        heads = {tuple(d[f] for f in _MEMBER_HEAD) for d in docs}
        return [MemberKey(*h) for h in sorted(heads, key=lambda h: (h[4], h[1], h[2], h[3], h[5]))]

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
            self.op_counts["writes"] += len(marks)
        except BulkWriteError as e:
            self._duplicates_only("seen", e)
            if session is not None:
                raise _SeenAlready() from e

    def _durable(self, name: str) -> Any:
        """The collection with a journaled write concern (`j: true`), for the dictionary's writes.

        They happen outside the transaction, and an id is used (cached, written into
        bitmaps that are committed durably) as soon as it is acknowledged. A write
        acknowledged before it is on disk can be lost when the server crashes (measured:
        SecantusDB killed with -9 loses the last few), and the next process would then
        give the same uid a second id (counted twice) or an id already used to another uid.
        """
        return self.db.get_collection(name, write_concern=WriteConcern(**{**self.db.write_concern.document,
                                                                          "j": True}))

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


_OPS = ("inc", "set", "set_on_insert", "max", "min")


def _combined(upserts: Sequence[Upsert]) -> list[Upsert]:
    """Upserts of one document folded into one update where their fields are disjoint (the usual
    case: a bolt's $set of `type` and the $max of its count_into), so a document costs one write."""
    out: list[Upsert] = []
    by_doc: dict[tuple, tuple[Upsert, set[str]]] = {}
    for up in upserts:
        doc = (up.collection, tuple(sorted(up.key.items())))
        fields = {f for op in _OPS for f in (getattr(up, op) or ())}
        got = by_doc.get(doc)
        if got is None or not got[1].isdisjoint(fields):
            merged = Upsert(up.collection, dict(up.key), **{op: dict(getattr(up, op)) if getattr(up, op) else None
                                                            for op in _OPS})
            merged.checked = True
            out.append(merged)
            by_doc[doc] = (merged, fields)
            continue
        merged, seen = got
        for op in _OPS:
            more = getattr(up, op)
            if more:
                object.__setattr__(merged, op, {**(getattr(merged, op) or {}), **more})
        seen |= fields
    return out


class _MongoParts:
    """merge_into's view of the bitmaps collection (inside the transaction when there is one)."""

    def __init__(self, store: MongoStore, session: Any) -> None:
        self.store, self.session = store, session
        self.coll = store.db.bitmaps

    def part_versions(self, head: Head) -> dict[int, tuple[int, int]]:
        docs = list(self.coll.find(_head_doc(head), {"part": 1, "n": 1, "v": 1, "_id": 0}, session=self.session))
        self.store.op_counts["reads"] += len(docs)
        return {d["part"]: (d["n"], d["v"]) for d in docs}

    def read_part(self, head: Head, part: int) -> CachedPart | None:
        d = self.coll.find_one({**_head_doc(head), "part": part}, {"bits": 1, "v": 1, "_id": 0}, session=self.session)
        if d is None:
            return None
        self.store.op_counts["reads"] += 1
        return CachedPart(deserialize(d["bits"]), d["v"], len(d["bits"]))

    def insert_part(self, head: Head, part: int, blob: bytes, n: int) -> bool:
        try:
            self.coll.insert_one({**_head_doc(head), "part": part, "n": n, "v": 1, "bits": Binary(blob)},
                                 session=self.session)
        except DuplicateKeyError:
            if self.session is not None:
                raise               # inside a transaction the server has aborted it: with_transaction decides
            return False
        self.store.op_counts["writes"] += 1
        return True

    def update_part(self, head: Head, part: int, blob: bytes, n: int, v: int) -> bool:
        res = self.coll.update_one({**_head_doc(head), "part": part, "v": v},
                                   {"$set": {"bits": Binary(blob), "n": n}, "$inc": {"v": 1}}, session=self.session)
        self.store.op_counts["writes"] += res.modified_count
        return res.matched_count == 1


#: Query indexes of every stat collection besides its key index: name -> fields.
_QUERY_INDEXES = {"ts": ("ts",), "game_ts": ("game", "ts"), "game_area_ts": ("game", "area", "ts")}


class _SeenAlready(Exception):
    """A seen mark inserted inside a transaction was there already (the transaction is aborted)."""


def _key_index_fields(key: Mapping[str, Any]) -> tuple[str, ...]:
    """The unique index of a key: game, area, plat, ts (those present, in this order), then the rest sorted."""
    head = tuple(f for f in KEY_FIELDS if f in key)
    return head + tuple(sorted(f for f in key if f not in KEY_FIELDS))
