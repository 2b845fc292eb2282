"""The keyed accumulator every aggregating bolt keeps between flushes (pure, no I/O).

A bolt folds each tuple into per-key state (`slot`, `keep_min`, `keep_max`) and at
flush hands all of it to the store batch (`take`, which starts an empty round);
when the flush fails, `put_back` folds what it took back in, so nothing is lost
and, with an idempotent merge (max, min, union), nothing is counted twice. A bolt
subclasses `Keyed` with its own `add(...)`: the logic stays in the bolt's file.
"""
from __future__ import annotations

from typing import Callable, Generic, Hashable, Iterator, Mapping, TypeVar

__all__ = ["Keyed"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Keyed(Generic[K, V]):
    """State per key since the last `take`; `new()` makes a key's first state (for `slot`)."""

    def __init__(self, new: Callable[[], V] | None = None) -> None:
        self._new = new
        self._pending: dict[K, V] = {}

    def slot(self, key: K) -> V:
        """The state of `key`, made by `new()` the first time it is asked for."""
        try:
            return self._pending[key]
        except KeyError:
            if self._new is None:
                raise TypeError(f"{type(self).__name__} has no factory for new keys") from None
            state = self._pending[key] = self._new()
            return state

    def keep_min(self, key: K, value: V) -> None:
        """Keep the smallest value seen for `key`."""
        cur = self._pending.get(key)
        if cur is None or value < cur:  # type: ignore[operator]
            self._pending[key] = value

    def keep_max(self, key: K, value: V) -> None:
        """Keep the largest value seen for `key`."""
        cur = self._pending.get(key)
        if cur is None or value > cur:  # type: ignore[operator]
            self._pending[key] = value

    def take(self) -> dict[K, V]:
        """Everything since the last take; the accumulator starts empty again."""
        pending, self._pending = self._pending, {}
        return pending

    def put_back(self, taken: Mapping[K, V]) -> None:
        """Fold back what a failed flush took, key by key through `merge`."""
        for key, state in taken.items():
            self.merge(key, state)

    def merge(self, key: K, state: V) -> None:
        """Fold one key's state in (idempotently: max, min, union keep a put-back exact);
        an accumulator whose bolt puts back what a failed flush took defines it."""
        raise NotImplementedError(f"{type(self).__name__} cannot merge states")

    def __bool__(self) -> bool:
        return bool(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[K]:
        return iter(self._pending)
