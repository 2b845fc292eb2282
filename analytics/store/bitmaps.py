"""Membership sets as compressed bitmaps: uid <-> integer, parts, blobs, the hot-set cache.

Why bitmaps (issue 15, docs/stores.md): a period's distinct users are one roaring
bitmap (pyroaring), written as one blob per touched period per flush instead of
one row per member. Union is idempotent, so replays and duplicates stay exact
with no per-member rows and no dedupe reads, and every derived figure (active
week = union of days, retention = intersection) is set algebra in memory.

Pure: no database here. The backends (sqlite.py, mongo.py) own the uid
dictionary tables and the compare-and-swap writes; this module gives them:

* `direct_id`: a uid that is a canonical decimal below `DICT_BASE` (2**32 - 2**28,
  about 4.03 billion: numeric account ids of 32-bit databases) is its own
  integer; every other uid goes through the per-game dictionary (`uid_map`),
  whose ids are the top 2**28 (268 million per game), so the two never collide.
* `split_parts`: a bitmap cut by the id's high bits (`part = id >> part_bits`), so
  that no stored blob passes MongoDB's 16 MB document limit.
* `serialize` / `deserialize`: pyroaring's portable format, the standard
  RoaringFormatSpec that the Java, Go and C roaring libraries read.
* `BitmapCache`: the hot sets of this process, LRU within a byte budget.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator, Protocol

from pyroaring import BitMap, FrozenBitMap

from analytics.store.errors import StoreError

__all__ = ["BitMap", "DIRECT_LIMIT", "DICT_BASE", "ID_LIMIT", "DEFAULT_PART_BITS", "DEFAULT_CACHE_BYTES", "MIGRATE_CHUNK",
           "direct_id", "split_ids", "split_parts", "serialize", "deserialize", "CachedPart", "BitmapCache",
           "UidCache", "parse_size", "PartIO", "merge_into", "apply_after", "MAX_CAS_ATTEMPTS"]

#: The first id the per-game dictionary hands out (ids are 32-bit: the dictionary has 2**28 of them).
DICT_BASE = 2 ** 32 - 2 ** 28
#: Canonical decimal uids below this are stored as themselves.
DIRECT_LIMIT = DICT_BASE
#: Bitmaps hold 32-bit ids.
ID_LIMIT = 2 ** 32
#: part = id >> 26: a part spans 2**26 ids, so even a worst-case (dense or scattered) part serializes to
#: at most ~8.4 MB, under MongoDB's 16 MB; numeric uids below 67 million all land in part 0 (one write).
DEFAULT_PART_BITS = 26
#: Default byte budget of the hot-set cache of one store object.
DEFAULT_CACHE_BYTES = 64 * 2 ** 20
#: Old member rows/documents moved into bitmaps per migration step.
MIGRATE_CHUNK = 200_000


def direct_id(uid: str) -> int | None:
    """uid's own integer when it is a canonical decimal in [0, DIRECT_LIMIT) ('0', '42'); else None.

    Canonical means str(int(uid)) == uid: '042', '+1', '-1', ' 1' and '1.0' go through the
    dictionary, so that decoding gives back exactly the string that went in.

    >>> direct_id("42"), direct_id("0"), direct_id("042"), direct_id("u1"), direct_id("4026531840")
    (42, 0, None, None, None)
    """
    if len(uid) <= 10 and uid.isdigit() and uid.isascii() and (uid[0] != "0" or uid == "0"):
        n = int(uid)
        if n < DIRECT_LIMIT:
            return n
    return None


def split_ids(uids: Iterable[str]) -> tuple[BitMap, list[str]]:
    """The direct ids of `uids` as a bitmap, and the uids that need the dictionary (deduplicated)."""
    direct: list[int] = []
    other: set[str] = set()
    keep_int, keep_str = direct.append, other.add
    for u in uids:
        # direct_id inlined (the same test): this runs once per member of every flushed set
        if u.isdigit() and len(u) <= 10 and u.isascii() and (u[0] != "0" or u == "0"):
            n = int(u)
            if n < DIRECT_LIMIT:
                keep_int(n)
                continue
        keep_str(u)
    return BitMap(direct), sorted(other)


@lru_cache(maxsize=128)
def _part_range(part: int, part_bits: int) -> FrozenBitMap:
    """All ids of one part, [part << part_bits, (part + 1) << part_bits), built once per part (immutable).

    Why cached: the range is 2**(part_bits - 16) run containers (1,024 by default); building it
    for every set that spans a part boundary was most of a replay's store time (issue 23), while
    intersecting with it costs only the containers of the set (CRoaring gallops over the rest).
    """
    r = BitMap()
    r.add_range(part << part_bits, min((part + 1) << part_bits, ID_LIMIT))
    return FrozenBitMap(r)


def split_parts(bm: BitMap, part_bits: int = DEFAULT_PART_BITS) -> dict[int, BitMap]:
    """{part: the ids of `bm` in that part}, part = id >> part_bits; only non-empty parts.

    A set within one part (the common case) is returned as it is, with no copy.
    """
    if not bm:
        return {}
    x, top = bm.min(), bm.max()
    if x >> part_bits == top >> part_bits:
        return {x >> part_bits: bm}
    out: dict[int, BitMap] = {}
    while True:
        p = x >> part_bits
        out[p] = bm & _part_range(p, part_bits)
        end = (p + 1) << part_bits
        if end > top:
            return out
        x = next(bm.iter_equal_or_larger(end))


def serialize(bm: BitMap) -> bytes:
    """The portable RoaringFormatSpec bytes of `bm` (runs compressed first)."""
    bm.run_optimize()
    return bm.serialize()


def deserialize(blob: bytes) -> BitMap:
    return BitMap.deserialize(bytes(blob))


def parse_size(text: str | int) -> int:
    """Bytes from 67108864, '64MiB', '64M', '512k' (binary units). ValueError shows the bad value.

    >>> parse_size("64MiB"), parse_size("512k"), parse_size(1000)
    (67108864, 524288, 1000)
    """
    if isinstance(text, int):
        return text
    s = str(text).strip().lower().removesuffix("ib").removesuffix("b")
    mult = {"k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30}.get(s[-1:], 1)
    try:
        n = int(s[:-1] if mult > 1 else s) * mult
    except ValueError:
        raise ValueError(f"not a byte size: {text!r} (e.g. 67108864, 64MiB, 512k)") from None
    if n < 0:
        raise ValueError(f"not a byte size: {text!r}")
    return n


@dataclass(frozen=True, slots=True)
class CachedPart:
    """A stored part as this process last saw it: never mutated (a new object replaces it)."""
    bits: BitMap
    v: int
    size: int


#: (set, game, area, plat, ts, sub): the key of one period set.
Head = tuple


class BitmapCache:
    """Recently written/read parts of hot period sets, least recently used evicted beyond `budget` bytes.

    Holds only what is stored (entries are put after their transaction commits),
    so eviction never loses data, and a stale entry (another writer moved on) is
    caught by the version compare-and-swap of the next write.
    """

    def __init__(self, budget: int = DEFAULT_CACHE_BYTES) -> None:
        self.budget = budget
        self.bytes = 0
        self._parts: OrderedDict[tuple[Head, int], CachedPart] = OrderedDict()
        #: Per head, the total count last computed (for count_into of an unchanged set).
        self._totals: dict[Head, int] = {}

    def get(self, head: Head, part: int) -> CachedPart | None:
        got = self._parts.get((head, part))
        if got is not None:
            self._parts.move_to_end((head, part))
        return got

    def total(self, head: Head) -> int | None:
        return self._totals.get(head)

    def put(self, head: Head, part: int, entry: CachedPart) -> None:
        old = self._parts.pop((head, part), None)
        if old is not None:
            self.bytes -= old.size
        if entry.size > self.budget:
            return
        self._parts[(head, part)] = entry
        self.bytes += entry.size
        while self.bytes > self.budget:
            (h, _), gone = self._parts.popitem(last=False)
            self.bytes -= gone.size
            self._totals.pop(h, None)

    def put_total(self, head: Head, n: int) -> None:
        if len(self._totals) > 4 * max(1, len(self._parts)) + 1024:
            self._totals.clear()        # a bound: totals of evicted heads
        self._totals[head] = n

    def clear(self) -> None:
        self._parts.clear()
        self._totals.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._parts)

    def __iter__(self) -> Iterator[tuple[Head, int]]:
        return iter(self._parts)


class UidCache:
    """uid <-> dictionary id of each game, as committed; cleared beyond `limit` entries (a bound)."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self._ids: dict[tuple[str, str], int] = {}
        self._names: dict[tuple[str, int], str] = {}

    def id(self, game: str, uid: str) -> int | None:
        return self._ids.get((game, uid))

    def name(self, game: str, n: int) -> str | None:
        return self._names.get((game, n))

    def put(self, game: str, pairs: Iterable[tuple[str, int]]) -> None:
        if len(self._ids) > self.limit:
            self._ids.clear()
            self._names.clear()
        for uid, n in pairs:
            self._ids[(game, uid)] = n
            self._names[(game, n)] = uid


class PartIO(Protocol):
    """What `merge_into` needs from a backend, inside its transaction (if it has one)."""

    def part_versions(self, head: Head) -> dict[int, tuple[int, int]]:
        """{part: (n, v)} of every stored part of the set `head`."""

    def read_part(self, head: Head, part: int) -> CachedPart | None:
        """One stored part (bits, v, blob size), or None."""

    def insert_part(self, head: Head, part: int, blob: bytes, n: int) -> bool:
        """Insert a new part with v = 1; False when one exists already (another writer was first)."""

    def update_part(self, head: Head, part: int, blob: bytes, n: int, v: int) -> bool:
        """Replace the part if its version is still `v` (then v + 1); False on a version miss."""


#: Compare-and-swap attempts on one part before giving up (each miss means another writer wrote it).
MAX_CAS_ATTEMPTS = 32


def merge_into(io: PartIO, cache: BitmapCache, head: Head, parts: dict[int, BitMap],
               after: list[tuple[Head, int | None, Any]]) -> int:
    """OR `parts` into the stored set `head` and return the set's size; write only parts that change.

    Why a compare-and-swap on v: two writers of one period (a partition hand-over,
    a replay beside the live topology) each union into what is stored, so neither
    loses a member. The cache is not touched here: (head, part, CachedPart) and
    (head, None, total) go to `after`, applied once the caller's transaction commits.
    A set whose new members are all in its cached parts costs no read and no write.
    """
    total = cache.total(head)
    if total is not None:
        for p, add in parts.items():
            c = cache.get(head, p)
            if c is None or not add.issubset(c.bits):
                break
        else:
            return total
    stored = io.part_versions(head)
    for p, add in parts.items():
        c = cache.get(head, p)
        known = stored.get(p)
        base: CachedPart | None = None
        if known is not None:
            base = c if c is not None and c.v == known[1] else io.read_part(head, p)
        for _ in range(MAX_CAS_ATTEMPTS):
            if base is None:
                blob = serialize(add)
                if io.insert_part(head, p, blob, len(add)):
                    entry = CachedPart(add, 1, len(blob))
                    break
            elif add.issubset(base.bits):
                entry = base
                break
            else:
                merged = base.bits | add
                blob = serialize(merged)
                if io.update_part(head, p, blob, len(merged), base.v):
                    entry = CachedPart(merged, base.v + 1, len(blob))
                    break
            base = io.read_part(head, p)    # another writer got there first: union with what it stored
        else:
            raise StoreError(f"set {head} part {p}: {MAX_CAS_ATTEMPTS} write conflicts in a row")
        stored[p] = (len(entry.bits), entry.v)
        after.append((head, p, entry))
    total = sum(n for n, _ in stored.values())
    after.append((head, None, total))
    return total


def apply_after(cache: BitmapCache, after: list[tuple[Head, int | None, Any]]) -> None:
    """Put what `merge_into` collected into the cache (call after the commit)."""
    for head, part, what in after:
        if part is None:
            cache.put_total(head, what)
        else:
            cache.put(head, part, what)
