"""MongoDB's semantics, checked once for every backend: upserts, filters, sorts, limits, comparison.

Why here: both backends call these, so the contract follows MongoDB's documented
behaviour rather than whatever the backend in hand happens to accept. Pure: no
store, no I/O.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import orjson

from analytics.store.errors import QueryError, StoreError

if TYPE_CHECKING:
    from analytics.store.batch import Upsert

__all__ = ["RESERVED_COLLECTIONS", "check_upsert", "check_where", "check_sort", "check_limit", "check_part_bits",
           "sort_docs", "sort_rank", "equal", "matches"]

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
    """Reject an upsert MongoDB would reject (or that the backends would treat differently)."""
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


def check_limit(limit: int | None) -> None:
    """A find's limit: None (all) or an int >= 0 (not a bool); QueryError otherwise."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise QueryError(f"bad limit {limit!r}")


def check_part_bits(part_bits: int) -> int:
    """The ids a bitmap part covers, as a power of two: 8..26 (a part of 2**26 ids stays under 16 MB)."""
    if not 8 <= part_bits <= 26:
        raise StoreError(f"part_bits must be in 8..26 (a part of 2**26 ids stays under 16 MB), got {part_bits}")
    return part_bits


def sort_rank(v: Any) -> tuple[int, Any]:
    """Order values of mixed types roughly as MongoDB does: missing/null < numbers < strings < others < bools."""
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (4, v)
    if isinstance(v, (int, float)):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3, orjson.dumps(v))


def sort_docs(docs: list[dict[str, Any]], order: Sequence[tuple[str, int]],
              limit: int | None) -> list[dict[str, Any]]:
    """`docs` sorted by `order` (from check_sort; stable, last key first) and cut at `limit`."""
    for f, direction in reversed(order):
        docs.sort(key=lambda d: sort_rank(d.get(f)), reverse=direction < 0)
    return docs[:limit] if limit is not None else docs


def equal(a: Any, b: Any) -> bool:
    """Equality as MongoDB sees it: 1 == 1.0, but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def matches(doc: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Whether `doc` has every field of `where` with an equal value (MongoDB's plain equality)."""
    return all(f in doc and equal(doc[f], v) for f, v in where.items())
