"""First days derived from membership sets: the `userfirst`/`rolefirst` collections and their span sets.

A per-user "first day" document ({game, area, plat, uid, ts}) is not stored one per
user: it is the first day set (login_day, createrole_day) that has the user
(docs/collections.md). To keep "everyone seen before day D" cheap, every first-day
set also feeds a span set per SPAN_SECONDS of day starts (the union of its days), so
that question is a few span blobs plus < 25 day blobs, not a read of the whole history.

Works on any `Store` through its public reads (bitmap, bitmap_between, member_keys,
decode, uid_bitmap) and `_find` of the stored documents.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from analytics.store.batch import Batch, Groups, MemberKey, add_group
from analytics.store.bitmaps import BitMap
from analytics.store.validation import check_limit, check_sort, check_where, matches, sort_docs

if TYPE_CHECKING:
    from analytics.store.base import Store

__all__ = ["FIRST_DAYS", "FIRST_DAY_SETS", "SPAN_SECONDS", "span_set", "with_spans", "build_spans", "before",
           "first_day_docs", "find_first_days"]

#: Per-user first-day collections that the store derives from membership sets instead of
#: storing one document per user (docs/collections.md): collection -> its day set.
#: `find` of one returns {game, area, plat, uid, ts = the first day of `uid` in the set},
#: merged (earliest ts wins) with any documents stored under that name (older versions).
FIRST_DAYS = {"userfirst": "login_day", "rolefirst": "createrole_day"}
FIRST_DAY_SETS = frozenset(FIRST_DAYS.values())
#: Seconds of day starts one span set covers: 2**21 s is about 24 days; spans are zone-free on purpose.
SPAN_SECONDS = 2 ** 21
_NEVER, _EVER = -2 ** 62, 2 ** 62


def span_set(day_set: str) -> str:
    return f"{day_set}_span"


def with_spans(sets: Groups) -> Groups:
    """`sets` plus, for each first-day set (FIRST_DAYS), the same members into its span set."""
    for head in [h for h in sets if h[0] in FIRST_DAY_SETS and h[5] == ""]:
        direct, names = sets[head]
        span = (span_set(head[0]), head[1], head[2], head[3], head[4] - head[4] % SPAN_SECONDS, "")
        add_group(sets, span, direct.copy(), names)
    return sets


def build_spans(store: Store) -> int:
    """Fill the span sets of first-day sets that have none (a store written by a version with
    bitmaps but before span sets); returns the day sets read. Idempotent; run by setup()."""
    done = 0
    for day_set in sorted(FIRST_DAY_SETS):
        if store.member_keys(span_set(day_set), ts_to=_EVER) or not store.member_keys(day_set):
            continue
        keys = [k for k in store.member_keys(day_set) if k.sub == ""]
        for i in range(0, len(keys), 50):
            b = Batch()
            for k in keys[i:i + 50]:
                b.add_members(k, store.members(k))     # the day sets change nothing; their spans fill
            store.apply(b)
        done += len(keys)
    return done


def before(store: Store, day_set: str, game: str, area: str, plat: str, ts: int) -> BitMap:
    """Everyone in a first-day set (FIRST_DAYS) on a day that starts before `ts`: the spans
    wholly before ts's span, then the days of its span before ts."""
    cut = ts - ts % SPAN_SECONDS
    out = store.bitmap_between(span_set(day_set), game, area, plat, _NEVER, cut, sub="")
    out |= store.bitmap_between(day_set, game, area, plat, cut, ts, sub="")
    return out


def first_day_docs(store: Store, collection: str, where: Mapping[str, Any] | None, ts_from: int | None,
                   ts_to: int | None) -> list[dict[str, Any]]:
    """The documents of a derived first-day collection (FIRST_DAYS), unsorted.

    Per server: the users of the day sets in [ts_from, ts_to) who are not in
    `before(ts_from)`, each with the first day that has them; merged with the
    documents stored under `collection` (earliest ts wins), then filtered by `where`.
    """
    day_set = FIRST_DAYS[collection]
    where = check_where(where)
    lo = _NEVER if ts_from is None else ts_from
    hi = _EVER if ts_to is None else ts_to
    server_filter = {f: where[f] for f in ("game", "area", "plat") if isinstance(where.get(f), str)}
    stored: dict[tuple, dict[str, Any]] = {}
    for d in store._find(collection, server_filter, ts_from=None, ts_to=ts_to):
        if "uid" in d and isinstance(d.get("ts"), int):
            stored[(d.get("game"), d.get("area"), d.get("plat"), str(d["uid"]))] = d
    by_server: dict[tuple[str, str, str], list[MemberKey]] = {}
    for k in store.member_keys(day_set, ts_from=ts_from, ts_to=ts_to, **server_filter):
        if k.sub == "":
            by_server.setdefault((k.game, k.area, k.plat), []).append(k)
    for game, area, plat, _ in stored:
        by_server.setdefault((game, area, plat), [])
    out: list[dict[str, Any]] = []
    for (game, area, plat), keys in sorted(by_server.items()):
        seen = before(store, day_set, game, area, plat, lo) if ts_from is not None else BitMap()
        derived: dict[str, int] = {}
        for k in sorted(keys, key=lambda k: k.ts):
            bm = store.bitmap(k)
            new = bm - seen
            if new:
                derived.update((u, k.ts) for u in store.decode(game, new))
                seen |= new
        firsts = dict(derived)
        for (g, a, p, uid), d in stored.items():
            if (g, a, p) != (game, area, plat):
                continue
            known = derived.get(uid)
            if known is None and ts_from is not None and store.uid_bitmap(game, [uid]).intersection_cardinality(seen):
                continue            # in a set before ts_from: its first day is earlier
            first = d["ts"] if known is None else min(d["ts"], known)
            if lo <= first < hi:
                firsts[uid] = first
            else:
                firsts.pop(uid, None)
        for uid, ts in firsts.items():
            doc = {**stored.get((game, area, plat, uid), {}), "game": game, "area": area, "plat": plat,
                   "uid": uid, "ts": ts}
            if matches(doc, where):
                out.append(doc)
    return out


def find_first_days(store: Store, collection: str, where: Mapping[str, Any] | None, ts_from: int | None,
                    ts_to: int | None, sort: Sequence[str], limit: int | None) -> list[dict[str, Any]]:
    """`find` of a derived first-day collection: first_day_docs, sorted and limited as MongoDB would."""
    order = check_sort(sort)
    check_limit(limit)
    return sort_docs(first_day_docs(store, collection, where, ts_from, ts_to), order, limit)
