"""The pure part of the membership bitmaps: uid classes, parts, the portable format, the cache, the merge."""
from __future__ import annotations

import pytest
from pyroaring import BitMap

from analytics.store.bitmaps import (DICT_BASE, BitmapCache, CachedPart, apply_after, deserialize, direct_id,
                                     merge_into, parse_size, serialize, split_ids, split_parts)
from analytics.store.errors import StoreError


@pytest.mark.parametrize("uid, n", [("0", 0), ("7", 7), ("2147483648", 2 ** 31), ("3000000123", 3000000123),
                                    ("4026531839", DICT_BASE - 1), ("10000001", 10000001)])
def test_canonical_small_decimals_are_their_own_id(uid: str, n: int) -> None:
    assert direct_id(uid) == n


@pytest.mark.parametrize("uid", ["4026531840", "4294967296", "042", "00", "+1", "-1", " 1", "1 ", "1.0", "u1", "", "١٢",
                                 "99999999999999999999"])
def test_everything_else_goes_through_the_dictionary(uid: str) -> None:
    assert direct_id(uid) is None


def test_split_ids_dedupes_the_dictionary_uids() -> None:
    direct, other = split_ids(["5", "u1", "5", "u1", "007", "3"])
    assert direct == BitMap([3, 5]) and other == ["007", "u1"]


def test_split_ids_sorts_exactly_as_direct_id_does() -> None:
    """split_ids inlines direct_id's test (its hot loop): both must agree on every kind of uid."""
    uids = ["0", "7", "2147483648", "3000000123", "4026531839", "10000001", "4026531840", "4294967296", "042",
            "00", "+1", "-1", " 1", "1 ", "1.0", "u1", "", "١٢", "99999999999999999999", "²", "3\n"]
    direct, other = split_ids(uids)
    assert direct == BitMap(n for u in uids if (n := direct_id(u)) is not None)
    assert other == sorted({u for u in uids if direct_id(u) is None})


def test_split_parts_by_high_bits() -> None:
    bm = BitMap([1, 15, 16, 40, 17 * 16, DICT_BASE + 3])
    parts = split_parts(bm, 4)
    assert parts == {0: BitMap([1, 15]), 1: BitMap([16]), 2: BitMap([40]), 17: BitMap([272]),
                     DICT_BASE >> 4: BitMap([DICT_BASE + 3])}
    assert BitMap.union(*parts.values()) == bm
    assert split_parts(BitMap([3, 9]), 4) == {0: BitMap([3, 9])}
    assert split_parts(BitMap(), 4) == {}


@pytest.mark.parametrize("part_bits", [4, 16, 26])
def test_split_parts_matches_the_brute_force_cut(part_bits: int) -> None:
    """Sets near 3e9 (numeric account ids) plus dictionary ids: every cut is the ids with that high part."""
    import random
    rnd = random.Random(part_bits)
    for size in (1, 2, 50, 3000):
        ids = {rnd.randrange(2_900_000_000, 3_100_000_000) for _ in range(size)} | {DICT_BASE + size, 2 ** 32 - 1}
        bm = BitMap(ids)
        parts = split_parts(bm, part_bits)
        want: dict[int, set[int]] = {}
        for n in ids:
            want.setdefault(n >> part_bits, set()).add(n)
        assert {p: set(b) for p, b in parts.items()} == want
        assert all(type(b) is BitMap for b in parts.values())   # mutable, like the input
        assert bm == BitMap(ids)                                 # the input is left as it was


def test_portable_format_round_trip() -> None:
    bm = BitMap(range(0, 200000, 3))
    bm.add_range(10 ** 6, 2 * 10 ** 6)
    blob = serialize(bm)
    assert deserialize(blob) == bm
    # RoaringFormatSpec: a run container's cookie is 12347 (0x303B) little-endian
    assert int.from_bytes(blob[:2], "little") in (12346, 12347)


def test_parse_size() -> None:
    assert parse_size("64MiB") == 64 * 2 ** 20 and parse_size("1g") == 2 ** 30 and parse_size("100") == 100
    with pytest.raises(ValueError, match="not a byte size"):
        parse_size("lots")


def test_cache_evicts_least_recently_used_beyond_its_budget() -> None:
    cache = BitmapCache(budget=100)
    for i in range(4):
        cache.put(("s", i), 0, CachedPart(BitMap([i]), 1, 40))
        cache.put_total(("s", i), 1)
    assert cache.bytes <= 100 and len(cache) == 2
    assert cache.get(("s", 0), 0) is None and cache.get(("s", 3), 0) is not None
    assert cache.total(("s", 0)) is None and cache.total(("s", 3)) == 1
    cache.put(("big",), 0, CachedPart(BitMap([1]), 1, 1000))     # larger than the budget: not kept
    assert cache.get(("big",), 0) is None and cache.bytes <= 100


class FakeParts:
    """A dict standing in for a backend; `steal` makes another writer land a part before our write."""

    def __init__(self) -> None:
        self.rows: dict[tuple, tuple[bytes, int]] = {}
        self.steal: dict[tuple, BitMap] = {}
        self.writes = 0

    def _theft(self, key: tuple) -> None:
        other = self.steal.pop(key, None)
        if other is not None:
            old = deserialize(self.rows[key][0]) if key in self.rows else BitMap()
            self.rows[key] = (serialize(old | other), self.rows.get(key, (b"", 0))[1] + 1)

    def part_versions(self, head):
        return {k[1]: (len(deserialize(b)), v) for k, (b, v) in self.rows.items() if k[0] == head}

    def read_part(self, head, part):
        got = self.rows.get((head, part))
        return None if got is None else CachedPart(deserialize(got[0]), got[1], len(got[0]))

    def insert_part(self, head, part, blob, n):
        self._theft((head, part))
        if (head, part) in self.rows:
            return False
        self.rows[(head, part)] = (blob, 1)
        self.writes += 1
        return True

    def update_part(self, head, part, blob, n, v):
        self._theft((head, part))
        if self.rows[(head, part)][1] != v:
            return False
        self.rows[(head, part)] = (blob, v + 1)
        self.writes += 1
        return True


def test_merge_unions_under_a_lost_race_and_skips_unchanged_sets() -> None:
    io, cache, head = FakeParts(), BitmapCache(), ("login_day", "dl")
    after: list = []
    assert merge_into(io, cache, head, {0: BitMap([1, 2])}, after) == 2
    apply_after(cache, after)
    io.steal[(head, 0)] = BitMap([9])          # another writer adds 9 before our next write lands
    after = []
    assert merge_into(io, cache, head, {0: BitMap([3])}, after) == 4
    apply_after(cache, after)
    assert deserialize(io.rows[(head, 0)][0]) == BitMap([1, 2, 3, 9])
    writes = io.writes
    after = []
    assert merge_into(io, cache, head, {0: BitMap([2, 9])}, after) == 4   # all cached: no read, no write
    assert io.writes == writes
    io.steal[(head, 1)] = BitMap([20])         # a new part raced on insert
    after = []
    assert merge_into(io, cache, head, {1: BitMap([21])}, after) == 6
    assert deserialize(io.rows[(head, 1)][0]) == BitMap([20, 21])


def test_merge_gives_up_after_endless_conflicts() -> None:
    class Hopeless(FakeParts):
        def update_part(self, *a):
            return False
    io, cache, head = Hopeless(), BitmapCache(), ("s",)
    io.rows[(head, 0)] = (serialize(BitMap([1])), 1)
    with pytest.raises(StoreError, match="write conflicts"):
        merge_into(io, cache, head, {0: BitMap([2])}, [])
