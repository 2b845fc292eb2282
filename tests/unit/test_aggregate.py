"""The keyed accumulator of the aggregating bolts (analytics/aggregate.py)."""
from __future__ import annotations

import pytest

from analytics.aggregate import Keyed

pytestmark = pytest.mark.timeout(10)


class Maxes(Keyed[str, int]):
    def merge(self, key: str, state: int) -> None:
        self.keep_max(key, state)


def test_slot_makes_a_key_state_once_and_take_starts_a_new_round() -> None:
    k: Keyed[tuple[str, int], set[str]] = Keyed(set)
    assert not k
    k.slot(("a", 1)).add("u1")
    k.slot(("a", 1)).add("u2")
    k.slot(("b", 2)).add("u1")
    assert len(k) == 2 and set(k) == {("a", 1), ("b", 2)}
    assert k.take() == {("a", 1): {"u1", "u2"}, ("b", 2): {"u1"}}
    assert not k and k.take() == {}


def test_keep_min_and_keep_max_keep_the_extreme_per_key() -> None:
    lo, hi = Keyed[str, int](), Keyed[str, int]()
    for v in (5, 3, 9):
        lo.keep_min("k", v)
        hi.keep_max("k", v)
    assert lo.take() == {"k": 3} and hi.take() == {"k": 9}
    with pytest.raises(TypeError, match="no factory"):
        lo.slot("k")


def test_put_back_merges_what_a_failed_flush_took() -> None:
    m = Maxes()
    m.merge("a", 4)
    taken = m.take()
    m.merge("a", 2)                      # arrived while the flush was failing
    m.put_back(taken)
    assert m.take() == {"a": 4}
    with pytest.raises(NotImplementedError):
        Keyed[str, int]().put_back({"a": 1})
