"""What a bolt hands the store in one flush: a `Batch` of upserts, membership adds and seen marks.

Three kinds of write, all idempotent or guarded (analytics/store/base.py says how
`Store.apply` applies them):

* `Batch.add_members`: per-period user membership sets (set, game, area, plat,
  ts, sub), each a compressed bitmap of user ids (analytics/store/bitmaps.py);
  with `count_into`, the set's size goes into a document field.
* `Batch.upsert` with `$set`/`$max`/`$min`/`$setOnInsert`: idempotent as they are.
* `Batch.upsert` with `$inc`: only for records the bolt has not counted before;
  the bolt learns which with `Store.unseen(scope, ids)` and the batch records
  them with `Batch.mark_seen` in the same atomic apply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from analytics.store.bitmaps import BitMap, Head, split_ids
from analytics.store.validation import check_upsert

__all__ = ["KEY_FIELDS", "MemberKey", "Upsert", "MemberAdd", "Batch", "Groups", "group_members", "add_group",
           "count_upserts"]

#: The fields every stat document is keyed and queried by.
KEY_FIELDS = ("game", "area", "plat", "ts")


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

    @property
    def head(self) -> Head:
        """The key as the tuple the stores and the bitmap cache index period sets by."""
        return (self.set, self.game, self.area, self.plat, self.ts, self.sub)


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

        A field may appear in only one of the operators (MongoDB rejects such an
        update): StoreError otherwise.
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


#: Per period set: its direct ids as one bitmap, and the uids that need the dictionary.
Groups = dict[Head, tuple[BitMap, list[str]]]


def group_members(batch: Batch) -> Groups:
    """The batch's member adds per period set: direct ids as one bitmap, the other uids listed."""
    out: Groups = {}
    for add in batch.members:
        direct, names = split_ids(map(str, add.members))
        add_group(out, add.key.head, direct, names)
    return out


def add_group(out: Groups, head: Head, direct: BitMap, names: list[str]) -> None:
    """Add direct ids and dictionary uids to the group of `head` in `out`."""
    got = out.get(head)
    if got is None:
        out[head] = (direct, list(names))
    else:
        got[0].update(direct)
        got[1].extend(names)


def count_upserts(batch: Batch, totals: Mapping[Head, int]) -> list[Upsert]:
    """The `count_into` writes of a batch: `$max` of each set's size (`totals`, after the members went in)."""
    out = []
    for add in batch.members:
        if add.count_into:
            coll, doc_key, fld = add.count_into
            up = Upsert(coll, dict(doc_key), max={fld: totals[add.key.head]})
            up.checked = True       # Batch.add_members checked the shape
            out.append(up)
    return out
