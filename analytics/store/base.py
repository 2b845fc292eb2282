"""The one narrow store interface every bolt and the query layer use: the `Store` base class.

A bolt never writes piecemeal: it fills a `Batch` (analytics/store/batch.py)
with what its in-memory aggregates amount to, and the store applies the whole
batch at once: one transaction on SQLite, one bulk write per collection on
MongoDB (inside a transaction when the server is a replica set).

The operations live here once and the backends implement primitives (as
faust's `SerializedStore` does): `apply` checks the batch and groups its member
adds per period set (with the span sets of analytics/store/firstday.py), then
hands them to the backend's `_write_batch`; `find` checks the query
(analytics/store/validation.py) and derives the first-day collections, leaving
the stored documents to `_find`; the uid dictionary's cache lookups are here,
the backends only read its rows (`_read_uid_map`).

Order of application inside `apply`: members, then upserts, then member
counts (`count_upserts`, computed after the members are in), then seen marks.

Every store counts the rows/documents it reads and writes in `op_counts`
({"reads": n, "writes": n}): what a replay reports as store operations.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence

from analytics.store import firstday
from analytics.store.batch import (KEY_FIELDS, Batch, Groups, MemberAdd, MemberKey, Upsert, count_upserts,
                                   group_members)
from analytics.store.bitmaps import (DEFAULT_CACHE_BYTES, DEFAULT_PART_BITS, DICT_BASE, BitMap, BitmapCache, Head,
                                     PartIO, UidCache, merge_into, split_ids, split_parts)
from analytics.store.errors import QueryError, StoreError, StoreUnavailable
from analytics.store.firstday import FIRST_DAYS
from analytics.store.validation import check_limit, check_part_bits, check_sort, check_upsert, check_where

__all__ = ["Batch", "Upsert", "MemberAdd", "MemberKey", "Store", "StoreError", "StoreUnavailable", "QueryError",
           "KEY_FIELDS", "FIRST_DAYS", "group_members", "count_upserts", "check_upsert", "check_where",
           "check_sort"]


class Store(ABC):
    """A stats store. Implementations: SQLiteStore (sqlite://), MongoStore (mongodb://)."""

    url: str
    #: Rows/documents read and written so far (members, docs, seen marks, uid_map).
    op_counts: dict[str, int]
    #: Hot period sets of this process (what is stored; put after each successful write).
    cache: BitmapCache
    #: Ids a bitmap part covers, as a power of two (check_part_bits).
    part_bits: int
    #: The uid dictionary entries this store has read or written.
    _uids: UidCache

    def __init__(self, url: str, *, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 part_bits: int = DEFAULT_PART_BITS) -> None:
        self.url = url
        self.part_bits = check_part_bits(part_bits)
        self.op_counts = {"reads": 0, "writes": 0}
        self.cache = BitmapCache(cache_bytes)
        self._uids = UidCache()

    #: The exceptions of the backend's driver that `_errors` translates.
    _driver_errors: ClassVar[type[Exception] | tuple[type[Exception], ...]] = ()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Driver errors -> StoreUnavailable (retry later) or StoreError, as `_store_error` decides."""
        try:
            yield
        except StoreError:
            raise
        except self._driver_errors as e:
            raise self._store_error(what, e) from e

    def _store_error(self, what: str, e: Exception) -> StoreError:
        """The store's exception for a driver error (StoreUnavailable when retrying may help)."""
        return StoreError(f"{what}: {e}")

    # -- writes: the template and its primitives ----------------------------

    @abstractmethod
    def setup(self) -> None:
        """Create tables/collections and every index the bolts and queries need. Idempotent."""

    def apply(self, batch: Batch) -> None:
        """Apply a batch (atomically where the store allows). Raises StoreUnavailable on outage.

        Re-checks the upserts changed behind Batch.upsert's back, groups the member
        adds per period set (plus their span sets), then the backend writes them
        (`_write_batch`): members, upserts with the counts, seen marks.
        """
        for up in batch.upserts:
            if not up.checked:
                check_upsert(up)
                up.checked = True
        if not batch:
            return
        self._write_batch(batch, firstday.with_spans(group_members(batch)))

    @abstractmethod
    def _write_batch(self, batch: Batch, sets: Groups) -> None:
        """Write `sets` (`_merge_sets`), then the batch's upserts and `count_upserts(batch, totals)`,
        then its seen marks: in one transaction where the backend has them."""

    def _parts(self, direct: BitMap, dict_ids: Iterable[int] = ()) -> dict[int, BitMap]:
        """One period set's new members (direct ids and dictionary ids) split into stored parts."""
        ids = BitMap(dict_ids)
        return split_parts(direct | ids if ids else direct, self.part_bits)

    def _merge_sets(self, io: PartIO, parts: Mapping[Head, dict[int, BitMap]],
                    after: list[tuple[Head, int | None, Any]]) -> dict[Head, int]:
        """OR each set's parts into what is stored (compare-and-swap, bitmaps.merge_into); {head: set size}."""
        return {head: merge_into(io, self.cache, head, p, after) for head, p in parts.items()}

    @abstractmethod
    def unseen(self, scope: str, ids: Sequence[str]) -> set[str]:
        """The subset of `ids` that `scope` has not marked seen yet."""

    @abstractmethod
    def purge_seen(self, older_than: int) -> int:
        """Delete seen marks recorded before epoch `older_than`; returns how many."""

    # -- documents -----------------------------------------------------------

    def find(self, collection: str, where: Mapping[str, Any] | None = None, *,
             ts_from: int | None = None, ts_to: int | None = None,
             sort: Sequence[str] = ("ts",), limit: int | None = None) -> list[dict[str, Any]]:
        """Documents of `collection` matching plain equality `where` and ts_from <= ts < ts_to.

        `where` keys are field names, values are str/int/float/bool; a key or value
        that is an operator (starts with '$') or a dict raises QueryError. Documents
        come back without the store's internal id, with the fields the bolt wrote.
        A first-day collection (FIRST_DAYS) is derived from its membership sets.
        """
        if collection in FIRST_DAYS:
            return firstday.find_first_days(self, collection, where, ts_from, ts_to, sort, limit)
        checked, order = check_where(where), check_sort(sort)
        check_limit(limit)
        if limit == 0:
            return []
        return self._find(collection, checked, ts_from=ts_from, ts_to=ts_to, order=order, limit=limit)

    @abstractmethod
    def _find(self, collection: str, where: dict[str, Any], *, ts_from: int | None, ts_to: int | None,
              order: Sequence[tuple[str, int]] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """The stored documents of `collection` (the backend's part of `find`): `where`, `order`
        (check_sort's) and `limit` (> 0 or None) already checked."""

    # -- membership sets -----------------------------------------------------

    @abstractmethod
    def bitmap(self, key: MemberKey) -> BitMap:
        """The members of one period set as integer ids (see `uid_bitmap`, `decode`)."""

    @abstractmethod
    def bitmap_between(self, set: str, game: str, area: str, plat: str,
                       ts_from: int, ts_to: int, sub: str | None = None) -> BitMap:
        """The union of `set` over every period starting in [ts_from, ts_to), as integer ids."""

    @abstractmethod
    def count_members(self, key: MemberKey) -> int:
        """The size of one period set."""

    @abstractmethod
    def member_keys(self, set: str, *, game: str | None = None, area: str | None = None,
                    plat: str | None = None, ts_from: int | None = None,
                    ts_to: int | None = None) -> list[MemberKey]:
        """The distinct period keys that have members in `set` (for timers and queries)."""

    def members(self, key: MemberKey) -> set[str]:
        """The members of one period set, decoded to uids."""
        return self.decode(key.game, self.bitmap(key))

    def members_between(self, set: str, game: str, area: str, plat: str,
                        ts_from: int, ts_to: int, sub: str | None = None) -> set[str]:
        """Distinct members of `set` over every period starting in [ts_from, ts_to), decoded to uids."""
        return self.decode(game, self.bitmap_between(set, game, area, plat, ts_from, ts_to, sub))

    def build_spans(self) -> int:
        """Fill missing span sets of first-day sets (firstday.build_spans); run by setup()."""
        return firstday.build_spans(self)

    def before(self, day_set: str, game: str, area: str, plat: str, ts: int) -> BitMap:
        """Everyone in a first-day set on a day that starts before `ts` (firstday.before)."""
        return firstday.before(self, day_set, game, area, plat, ts)

    def first_day_docs(self, collection: str, where: Mapping[str, Any] | None, ts_from: int | None,
                       ts_to: int | None) -> list[dict[str, Any]]:
        """The documents of a derived first-day collection, unsorted (firstday.first_day_docs)."""
        return firstday.first_day_docs(self, collection, where, ts_from, ts_to)

    # -- the uid dictionary --------------------------------------------------

    @abstractmethod
    def _read_uid_map(self, game: str, by: str, values: Sequence[str] | Sequence[int]) -> list[tuple[str, int]]:
        """(uid, n) of the dictionary entries of `game` whose `by` ('uid' or 'n') is in `values`."""

    def _uid_ids(self, game: str, uids: Sequence[str]) -> dict[str, int]:
        """Dictionary ids of the given non-direct uids that have one (none is created); cached."""
        out = {u: n for u in uids if (n := self._uids.id(game, u)) is not None}
        todo = sorted({u for u in uids if u not in out})
        if todo:
            found = self._read_uid_map(game, "uid", todo)
            self._uids.put(game, found)
            out.update(found)
        return out

    def _uid_names(self, game: str, ids: Sequence[int]) -> dict[int, str]:
        """The uids of the given dictionary ids (those that exist); cached."""
        out = {n: u for n in ids if (u := self._uids.name(game, n)) is not None}
        todo = [n for n in ids if n not in out]
        if todo:
            found = self._read_uid_map(game, "n", todo)
            self._uids.put(game, found)
            out.update((n, u) for u, n in found)
        return out

    def uid_bitmap(self, game: str, uids: Iterable[str]) -> BitMap:
        """The integer ids of `uids` in `game`; a uid the dictionary does not know is in no set: left out."""
        bm, other = split_ids(uids)
        if other:
            bm.update(self._uid_ids(game, other).values())
        return bm

    def decode(self, game: str, bm: BitMap) -> set[str]:
        """The uids of a bitmap of `game` (dictionary ids through uid_map)."""
        out: set[str] = set()
        mapped: list[int] = []
        for n in bm:
            if n < DICT_BASE:
                out.add(str(n))
            else:
                mapped.append(n)
        if mapped:
            names = self._uid_names(game, mapped)
            missing = len(mapped) - len(names)
            if missing:
                raise StoreError(f"{missing} id(s) of game {game!r} missing from uid_map (e.g. "
                                 f"{next(n for n in mapped if n not in names)}): the dictionary is damaged")
            out.update(names.values())
        return out

    # -- lifecycle -----------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release connections. The store may not be used afterwards."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
