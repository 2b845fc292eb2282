"""The one narrow store interface every bolt and the query layer use.

A bolt never writes piecemeal: it fills a `Batch` with what its in-memory
aggregates amount to, and the store applies the whole batch at once
(`Store.apply`): one transaction on SQLite, one bulk write per collection on
MongoDB (inside a transaction when the server is a replica set).

Exactness comes from three kinds of write, all idempotent or guarded:

* `Batch.add_members`: per-period user membership sets (set, game, area, plat,
  ts, sub), each a compressed bitmap of user ids (analytics/store/bitmaps.py),
  written as one blob per touched period (and part) per apply, OR-merged under a
  version compare-and-swap. Distinct-user counts are derived from them
  (`count_into`), never from arrays inside a stat document.
* `Batch.upsert` with `$set`/`$max`/`$min`/`$setOnInsert`: idempotent as they are.
* `Batch.upsert` with `$inc`: only for records the bolt has not counted before;
  the bolt learns which with `Store.unseen(scope, ids)` and the batch records
  them with `Batch.mark_seen` in the same atomic apply.

Order of application inside `apply`: members, then upserts, then member
counts (`count_into`, computed after the members are in), then seen marks.

Every store counts the rows/documents it reads and writes in `op_counts`
({"reads": n, "writes": n}): what a replay reports as store operations.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from analytics.store.bitmaps import DICT_BASE, BitMap, Head, UidCache, split_ids
from analytics.store.errors import QueryError, StoreError, StoreUnavailable

__all__ = ["Batch", "Upsert", "MemberAdd", "MemberKey", "Store", "StoreError",
           "StoreUnavailable", "QueryError", "KEY_FIELDS", "group_members", "check_upsert", "check_where", "check_sort"]

#: The fields every stat document is keyed and queried by.
KEY_FIELDS = ("game", "area", "plat", "ts")

#: Per-user first-day collections that the store derives from membership sets instead of
#: storing one document per user (docs/collections.md): collection -> its day set.
#: `find` of one returns {game, area, plat, uid, ts = the first day of `uid` in the set},
#: merged (earliest ts wins) with any documents stored under that name (older versions).
FIRST_DAYS = {"userfirst": "login_day", "rolefirst": "createrole_day"}
#: Every first-day set also feeds a "span" set per SPAN_SECONDS of day starts (union of its
#: days), so "everyone seen before day D" is a few span blobs plus < 25 day blobs, not a
#: read of the whole history. 2**21 s is about 24 days; spans are zone-free on purpose.
SPAN_SECONDS = 2 ** 21


def span_set(day_set: str) -> str:
    return f"{day_set}_span"


@dataclass(frozen=True, slots=True)
class MemberKey:
    """Which period set a member belongs to.

    `set` names the membership (e.g. 'login_day'); `sub` is an optional extra
    dimension (an item id, a task id, a consumption type), '' when unused.
    """
    set: str
    game: str
    area: str
    plat: str
    ts: int
    sub: str = ""


@dataclass(slots=True)
class Upsert:
    """One upsert. `checked` says check_upsert passed it; assigning any other field clears it,
    so `apply` re-checks only what was changed behind Batch.upsert's back (no second check)."""
    collection: str
    key: dict[str, Any]
    inc: dict[str, float] | None = None
    set: dict[str, Any] | None = None
    set_on_insert: dict[str, Any] | None = None
    max: dict[str, Any] | None = None
    min: dict[str, Any] | None = None
    checked: bool = field(default=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "checked":
            object.__setattr__(self, "checked", False)


@dataclass(slots=True)
class MemberAdd:
    key: MemberKey
    members: set[str]
    #: After adding, set `field` of the document (collection, key) to the
    #: number of members of `key`: (collection, doc_key, field).
    count_into: tuple[str, dict[str, Any], str] | None = None


@dataclass
class Batch:
    """Everything one flush of one bolt writes, applied atomically where the store allows."""
    upserts: list[Upsert] = field(default_factory=list)
    members: list[MemberAdd] = field(default_factory=list)
    seen: dict[str, list[str]] = field(default_factory=dict)

    def upsert(self, collection: str, key: Mapping[str, Any], *, inc: Mapping[str, float] | None = None,
               set: Mapping[str, Any] | None = None, set_on_insert: Mapping[str, Any] | None = None,
               max: Mapping[str, Any] | None = None, min: Mapping[str, Any] | None = None) -> None:
        """Upsert the document `key` in `collection` with MongoDB update semantics.

        A field may appear in only one of the operators (as on MongoDB, which
        rejects such an update; mongomock accepts it): StoreError otherwise.
        """
        up = Upsert(collection, dict(key),
                    dict(inc) if inc else None, dict(set) if set else None,
                    dict(set_on_insert) if set_on_insert else None,
                    dict(max) if max else None, dict(min) if min else None)
        check_upsert(up)
        up.checked = True
        self.upserts.append(up)

    def add_members(self, key: MemberKey, members: Iterable[str], *,
                    count_into: tuple[str, Mapping[str, Any], str] | None = None) -> None:
        """Add members to a period set; optionally store the set's size in a document field.

        The size goes in with $max (sets only grow): a writer whose view of the set
        lags another's never lowers the stored count.
        """
        ci = None
        if count_into:
            ci = (count_into[0], dict(count_into[1]), count_into[2])
            check_upsert(Upsert(ci[0], ci[1], max={ci[2]: 0}))
        self.members.append(MemberAdd(key, set(members), ci))

    def mark_seen(self, scope: str, ids: Iterable[str]) -> None:
        """Record that these record ids are now counted by `scope` (usually the bolt's name)."""
        self.seen.setdefault(scope, []).extend(ids)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.members or self.seen)


def group_members(batch: Batch) -> dict[Head, tuple[BitMap, list[str]]]:
    """Per period set of the batch: its direct ids as one bitmap, and the uids that need the dictionary."""
    out: dict[Head, tuple[BitMap, list[str]]] = {}
    for add in batch.members:
        direct, names = split_ids(map(str, add.members))
        head = (add.key.set, add.key.game, add.key.area, add.key.plat, add.key.ts, add.key.sub)
        _add_group(out, head, direct, names)
    return with_spans(out)


def _add_group(out: dict[Head, tuple[BitMap, list[str]]], head: Head, direct: BitMap, names: list[str]) -> None:
    got = out.get(head)
    if got is None:
        out[head] = (direct, list(names))
    else:
        got[0].update(direct)
        got[1].extend(names)


def with_spans(sets: dict[Head, tuple[BitMap, list[str]]]) -> dict[Head, tuple[BitMap, list[str]]]:
    """`sets` plus, for each first-day set (FIRST_DAYS), the same members into its span set."""
    for head in [h for h in sets if h[0] in _FIRST_DAY_SETS and h[5] == ""]:
        direct, names = sets[head]
        span = (span_set(head[0]), head[1], head[2], head[3], head[4] - head[4] % SPAN_SECONDS, "")
        _add_group(sets, span, direct.copy(), names)
    return sets


_FIRST_DAY_SETS = frozenset(FIRST_DAYS.values())


class Store(ABC):
    """A stats store. Implementations: SQLiteStore (sqlite://), MongoStore (mongodb://)."""

    url: str
    #: Rows/documents read and written so far (members, docs, seen marks, uid_map).
    op_counts: dict[str, int]
    #: The uid dictionary entries this store has read or written (set by each backend).
    _uids: UidCache

    @abstractmethod
    def setup(self) -> None:
        """Create tables/collections and every index the bolts and queries need. Idempotent."""

    @abstractmethod
    def apply(self, batch: Batch) -> None:
        """Apply a batch (atomically where the store allows). Raises StoreUnavailable on outage."""

    @abstractmethod
    def unseen(self, scope: str, ids: Sequence[str]) -> set[str]:
        """The subset of `ids` that `scope` has not marked seen yet."""

    @abstractmethod
    def _find(self, collection: str, where: Mapping[str, Any] | None = None, *,
              ts_from: int | None = None, ts_to: int | None = None,
              sort: Sequence[str] = ("ts",), limit: int | None = None) -> list[dict[str, Any]]:
        """`find` of the documents stored under `collection` (the backend's part)."""

    @abstractmethod
    def bitmap(self, key: MemberKey) -> BitMap:
        """The members of one period set as integer ids (see `uid_bitmap`, `decode`)."""

    @abstractmethod
    def bitmap_between(self, set: str, game: str, area: str, plat: str,
                       ts_from: int, ts_to: int, sub: str | None = None) -> BitMap:
        """The union of `set` over every period starting in [ts_from, ts_to), as integer ids."""

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

    def build_spans(self) -> int:
        """Fill the span sets of first-day sets that have none (a store written by a version with
        bitmaps but before span sets); returns the day sets read. Idempotent; run by setup()."""
        done = 0
        for day_set in sorted(_FIRST_DAY_SETS):
            if self.member_keys(span_set(day_set), ts_to=2 ** 62) or not self.member_keys(day_set):
                continue
            keys = [k for k in self.member_keys(day_set) if k.sub == ""]
            for i in range(0, len(keys), 50):
                b = Batch()
                for k in keys[i:i + 50]:
                    b.add_members(k, self.members(k))     # the day sets change nothing; their spans fill
                self.apply(b)
            done += len(keys)
        return done

    def before(self, day_set: str, game: str, area: str, plat: str, ts: int) -> BitMap:
        """Everyone in a first-day set (FIRST_DAYS) on a day that starts before `ts`: the spans
        wholly before ts's span, then the days of its span before ts."""
        cut = ts - ts % SPAN_SECONDS
        out = self.bitmap_between(span_set(day_set), game, area, plat, -2 ** 62, cut, sub="")
        out |= self.bitmap_between(day_set, game, area, plat, cut, ts, sub="")
        return out

    def first_day_docs(self, collection: str, where: Mapping[str, Any] | None, ts_from: int | None,
                       ts_to: int | None) -> list[dict[str, Any]]:
        """The documents of a derived first-day collection (FIRST_DAYS), unsorted.

        Per server: the users of the day sets in [ts_from, ts_to) who are not in
        `before(ts_from)`, each with the first day that has them; merged with the
        documents stored under `collection` (earliest ts wins), then filtered by `where`.
        """
        day_set = FIRST_DAYS[collection]
        where = check_where(where)
        lo = -2 ** 62 if ts_from is None else ts_from
        hi = 2 ** 62 if ts_to is None else ts_to
        server_filter = {f: where[f] for f in ("game", "area", "plat") if isinstance(where.get(f), str)}
        stored: dict[tuple, dict[str, Any]] = {}
        for d in self._find(collection, server_filter or None, ts_from=None, ts_to=ts_to, sort=(), limit=None):
            if "uid" in d and isinstance(d.get("ts"), int):
                stored[(d.get("game"), d.get("area"), d.get("plat"), str(d["uid"]))] = d
        by_server: dict[tuple[str, str, str], list[MemberKey]] = {}
        for k in self.member_keys(day_set, ts_from=ts_from, ts_to=ts_to, **server_filter):
            if k.sub == "":
                by_server.setdefault((k.game, k.area, k.plat), []).append(k)
        for game, area, plat, _ in stored:
            by_server.setdefault((game, area, plat), [])
        out: list[dict[str, Any]] = []
        for (game, area, plat), keys in sorted(by_server.items()):
            seen = self.before(day_set, game, area, plat, lo) if ts_from is not None else BitMap()
            derived: dict[str, int] = {}
            for k in sorted(keys, key=lambda k: k.ts):
                bm = self.bitmap(k)
                new = bm - seen
                if new:
                    derived.update((u, k.ts) for u in self.decode(game, new))
                    seen |= new
            firsts = dict(derived)
            for (g, a, p, uid), d in stored.items():
                if (g, a, p) != (game, area, plat):
                    continue
                known = derived.get(uid)
                if known is None and ts_from is not None and self.uid_bitmap(game, [uid]).intersection_cardinality(seen):
                    continue            # in a set before ts_from: its first day is earlier
                first = d["ts"] if known is None else min(d["ts"], known)
                if lo <= first < hi:
                    firsts[uid] = first
                else:
                    firsts.pop(uid, None)
            for uid, ts in firsts.items():
                doc = {**stored.get((game, area, plat, uid), {}), "game": game, "area": area, "plat": plat,
                       "uid": uid, "ts": ts}
                if all(f in doc and _equal(doc[f], v) for f, v in where.items()):
                    out.append(doc)
        return out

    def find(self, collection: str, where: Mapping[str, Any] | None = None, *,
             ts_from: int | None = None, ts_to: int | None = None,
             sort: Sequence[str] = ("ts",), limit: int | None = None) -> list[dict[str, Any]]:
        """Documents of `collection` matching plain equality `where` and ts_from <= ts < ts_to.

        `where` keys are field names, values are str/int/float/bool; a key or value
        that is an operator (starts with '$') or a dict raises QueryError. Documents
        come back without the store's internal id, with the fields the bolt wrote.
        A first-day collection (FIRST_DAYS) is derived from its membership sets.
        """
        if collection not in FIRST_DAYS:
            return self._find(collection, where, ts_from=ts_from, ts_to=ts_to, sort=sort, limit=limit)
        order = check_sort(sort)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise QueryError(f"bad limit {limit!r}")
        docs = self.first_day_docs(collection, where, ts_from, ts_to)
        for f, direction in reversed(order):
            docs.sort(key=lambda d: _sort_rank(d.get(f)), reverse=direction < 0)
        return docs[:limit] if limit is not None else docs

    def members(self, key: MemberKey) -> set[str]:
        """The members of one period set, decoded to uids."""
        return self.decode(key.game, self.bitmap(key))

    def members_between(self, set: str, game: str, area: str, plat: str,
                        ts_from: int, ts_to: int, sub: str | None = None) -> set[str]:
        """Distinct members of `set` over every period starting in [ts_from, ts_to), decoded to uids."""
        return self.decode(game, self.bitmap_between(set, game, area, plat, ts_from, ts_to, sub))

    @abstractmethod
    def count_members(self, key: MemberKey) -> int:
        """The size of one period set."""

    @abstractmethod
    def member_keys(self, set: str, *, game: str | None = None, area: str | None = None,
                    plat: str | None = None, ts_from: int | None = None,
                    ts_to: int | None = None) -> list[MemberKey]:
        """The distinct period keys that have members in `set` (for timers and queries)."""

    @abstractmethod
    def purge_seen(self, older_than: int) -> int:
        """Delete seen marks recorded before epoch `older_than`; returns how many."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. The store may not be used afterwards."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SCALARS = (str, int, float, bool)
_COLLECTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Names the stores use for themselves; a stat collection may not take them.
RESERVED_COLLECTIONS = frozenset({"members", "member_sets", "seen", "docs", "bitmaps", "uid_map", "uid_seq",
                                  "store_meta"})


def _plain_field(name: object) -> bool:
    return isinstance(name, str) and bool(name) and not name.startswith("$") and "." not in name


#: Upsert shapes already found valid: a bolt writes thousands of upserts of one shape per flush.
_VALID_SHAPES: set[tuple] = set()
_MAX_SHAPES = 4096


def _shape(up: Upsert) -> tuple | None:
    """What check_upsert's verdict depends on, or None when values matter beyond their types."""
    if up.set and not up.set.keys().isdisjoint(up.key) or \
            up.set_on_insert and not up.set_on_insert.keys().isdisjoint(up.key):
        return None  # setting a key field is allowed only to its own value: check it every time
    return (up.collection, tuple(up.key), tuple(map(type, up.key.values())),
            tuple(up.inc or ()), tuple(map(type, (up.inc or {}).values())), tuple(up.set or ()),
            tuple(up.set_on_insert or ()), tuple(up.max or ()), tuple(up.min or ()))


def check_upsert(up: Upsert) -> None:
    """Reject an upsert MongoDB would reject (or that the backends would treat differently).

    Why here: both backends call it, so the contract follows MongoDB's documented
    behaviour rather than whatever the backend in hand happens to accept.
    """
    shape = _shape(up)
    if shape is not None and shape in _VALID_SHAPES:
        return
    _check_upsert(up)
    if shape is not None and len(_VALID_SHAPES) < _MAX_SHAPES:
        _VALID_SHAPES.add(shape)


def _check_upsert(up: Upsert) -> None:
    if not isinstance(up.collection, str) or not _COLLECTION.fullmatch(up.collection) \
            or up.collection in RESERVED_COLLECTIONS:
        raise StoreError(f"bad collection name {up.collection!r}")
    if not up.key:
        raise StoreError(f"empty key for an upsert into {up.collection!r}")
    for k, v in up.key.items():
        if not _plain_field(k) or isinstance(v, dict) or not isinstance(v, _SCALARS):
            raise StoreError(f"bad key field {k!r}={v!r} for {up.collection!r}")
    owner: dict[str, str] = {}
    for op, fields in (("$inc", up.inc), ("$set", up.set), ("$setOnInsert", up.set_on_insert),
                       ("$max", up.max), ("$min", up.min)):
        for f in fields or ():
            if not _plain_field(f):
                raise StoreError(f"bad field name {f!r} in {op} for {up.collection!r}")
            if f in up.key and not (op in ("$set", "$setOnInsert") and fields[f] == up.key[f]):
                # Changing a key field would move the document off its key (and the
                # backends would disagree); setting it to the key's own value is harmless.
                raise StoreError(f"field {f!r} is part of the key and cannot be changed with {op}")
            if f in owner:
                raise StoreError(f"field {f!r} appears in both {owner[f]} and {op} "
                                 f"(MongoDB rejects this update)")
            owner[f] = op
    for f, v in (up.inc or {}).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise StoreError(f"$inc of {f!r} by non-number {v!r}")


def check_where(where: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a plain-equality filter from user input; QueryError shows the bad item.

    This is what keeps `$` operators (and dotted paths, sub-documents) out of queries.
    """
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise QueryError(f"where must be a mapping of field -> value, not {where!r}")
    for k, v in where.items():
        if not _plain_field(k):
            raise QueryError(f"bad field name in where: {k!r} (plain names only: no '$', no '.')")
        if not isinstance(v, _SCALARS):
            raise QueryError(f"bad value in where for {k!r}: {v!r} (str, int, float or bool only)")
    return dict(where)


def check_sort(sort: Sequence[str]) -> list[tuple[str, int]]:
    """Parse sort fields ('ts', '-count' for descending) into (field, 1|-1); QueryError if bad."""
    if isinstance(sort, str):
        sort = (sort,)
    out = []
    for s in sort:
        name, direction = (s[1:], -1) if isinstance(s, str) and s.startswith("-") else (s, 1)
        if not _plain_field(name):
            raise QueryError(f"bad sort field {s!r}")
        out.append((name, direction))
    return out


def _sort_rank(v: Any) -> tuple[int, Any]:
    """Order values of mixed types roughly as MongoDB does: missing/null < numbers < strings < bools."""
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (4, v)
    if isinstance(v, (int, float)):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3, orjson.dumps(v))


def _equal(a: Any, b: Any) -> bool:
    """Equality as MongoDB sees it: 1 == 1.0, but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
