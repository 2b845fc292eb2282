"""What the timer bolts share: rates, retention offsets, and the recompute-from-the-store base class.

A timer bolt does not aggregate tuples. It subscribes to the *state* topics the
day bolts emit after each flush ("login.day", "createrole.day", ...), turns each
one into the period keys it makes stale (dirty), and on every tick recomputes
those periods from the store and writes the figures with ``$set``. Recomputing
the same period twice writes the same document, so ticks, replays and restarts
are idempotent; nothing is persisted, since the dirty marks are re-derived from
the state tuples a replay or the live stream carries (docs/timers.md).

The top of this module is pure (sets, counts and zones in, numbers out); the
`TimerBolt` base below is the thin part that reads the store. Member sets come
back from the store as integer bitmaps (pyroaring), so a recompute is set algebra
on a few blobs per dirty period (union, intersection), not a read per member.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from functools import lru_cache
from typing import AbstractSet, Any, ClassVar, Iterable, Mapping

from analytics.component import Bolt, Context
from analytics.measures import RETENTION_OFFSETS, rate
from analytics.periods import add_days, day_start
from analytics.store.base import FIRST_DAYS, Batch, MemberKey, Store
from analytics.store.bitmaps import BitMap
from analytics.tuples import Tuple
from bolts.common import PeriodKey

__all__ = ["RETENTION_OFFSETS", "rate", "later_days", "cohorts_touched", "retention_counts",
           "PeriodKey", "SetCache", "TimerBolt"]

log = logging.getLogger(__name__)


# -- pure ------------------------------------------------------------------------------

def later_days(day: int, tz: str, offsets: Iterable[int] = RETENTION_OFFSETS) -> dict[int, int]:
    """{k: start of the local day k days after `day`} for each offset (calendar days in `tz`)."""
    return dict(_later_days(day, tz, tuple(offsets)))


@lru_cache(maxsize=4096)
def _later_days(day: int, tz: str, offsets: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((k, add_days(day, k, tz)) for k in offsets)


def cohorts_touched(day: int, tz: str, offsets: Iterable[int] = RETENTION_OFFSETS) -> list[int]:
    """Cohort days whose retention an activity on `day` changes: day-k for each offset, oldest first."""
    return list(_cohorts_touched(day, tz, tuple(offsets)))


@lru_cache(maxsize=4096)
def _cohorts_touched(day: int, tz: str, offsets: tuple[int, ...]) -> tuple[int, ...]:
    # cached: every login.day tuple asks again, and zone arithmetic is most of a timer's process()
    return tuple(sorted(add_days(day, -k, tz) for k in offsets))


#: day_start of the state tuples' ts (one per day and server: the same few values again and again).
_day_start = lru_cache(maxsize=4096)(day_start)


def retention_counts(cohort: AbstractSet[Any], later: Mapping[int, AbstractSet[Any]],
                     offsets: Iterable[int] = RETENTION_OFFSETS, size: int | None = None) -> dict[str, int | float]:
    """d<k> = |cohort ∩ later[k]| and d<k>_rate = its percentage of the cohort, for each offset.

    `later[k]` is who was active on cohort day + k; a missing k counts as nobody.
    Sets or bitmaps (all of one kind). `size` is the cohort's size when `cohort`
    leaves out members that are in no set at all (default: len(cohort)).
    """
    out: dict[str, int | float] = {}
    n = len(cohort) if size is None else size
    for k in offsets:
        got = later.get(k)
        kept = len(cohort & got) if n and got is not None else 0
        out[f"d{k}"] = kept
        out[f"d{k}_rate"] = rate(kept, n)
    return out


# -- store-backed base -------------------------------------------------------------------

class SetCache:
    """Member bitmaps read during one tick, least recently used evicted beyond `size`.

    Why: a login day is read by up to ten retention cohorts; dirty keys are
    recomputed in sorted order, so neighbouring cohorts hit the cache.
    """

    def __init__(self, store: Store, size: int) -> None:
        self.store = store
        self.size = max(1, size)
        self.reads = 0
        self._sets: OrderedDict[MemberKey, BitMap] = OrderedDict()
        #: (day set, game, area, plat) -> (ts, everyone in the set on a day before ts), the last asked.
        self._before: dict[tuple[str, str, str, str], tuple[int, BitMap]] = {}
        #: (collection, game, area, plat) -> whether an older version stored first-day documents there.
        self._legacy: dict[tuple[str, str, str, str], bool] = {}

    def bitmap(self, key: MemberKey) -> BitMap:
        """The members of one period set as integer ids (do not modify: it is shared)."""
        got = self._sets.get(key)
        if got is not None:
            self._sets.move_to_end(key)
            return got
        got = self.store.bitmap(key)
        self.reads += 1
        self._sets[key] = got
        while len(self._sets) > self.size:
            self._sets.popitem(last=False)
        return got

    def before(self, day_set: str, game: str, area: str, plat: str, ts: int) -> BitMap:
        """Everyone in `day_set` on a day that starts before `ts` (do not modify: it is shared).

        Why kept: dirty keys come sorted, so the next period of a server asks for a later
        ts; that is the previous answer plus the days in between, not the spans again.
        """
        k = (day_set, game, area, plat)
        got = self._before.get(k)
        if got is not None and got[0] == ts:
            return got[1]
        if got is not None and got[0] < ts:
            bm = got[1] | self.store.bitmap_between(day_set, game, area, plat, got[0], ts, sub="")
        else:
            bm = self.store.before(day_set, game, area, plat, ts)
        self.reads += 1
        self._before[k] = (ts, bm)
        return bm

    def legacy(self, collection: str, game: str, area: str, plat: str) -> bool:
        """Whether `collection` (FIRST_DAYS) has documents an older version stored for this server."""
        k = (collection, game, area, plat)
        got = self._legacy.get(k)
        if got is None:
            got = bool(self.store._find(collection, {"game": game, "area": area, "plat": plat}, ts_from=None,
                                       ts_to=None, limit=1))
            self._legacy[k] = got
        return got


class TimerBolt(Bolt):
    """Recompute dirty periods from the store on each tick; write them with $set.

    Subclasses set `topics`, `collection`, and implement `dirtied`, `current`
    and `compute`. Every tick recomputes *every* dirty key (the drain tick must
    finish them all, and the base gives no other way to tell it apart), in
    sorted order; docs/timers.md gives the cost.
    """

    #: Recompute every this many seconds (wall clock); the base also ticks once on drain.
    tick_seconds: ClassVar[float | None] = 60.0
    #: Also recompute the periods containing the wall-clock `now` for every (game, area, plat)
    #: seen, at most this often (seconds; None: never): keeps today/this week/this month fresh.
    refresh_seconds: ClassVar[float | None] = 300.0
    #: Member sets kept in memory during one tick.
    cache_sets: ClassVar[int] = 48
    #: On the first tick after start, mark dirty what the state tuples of the days that started
    #: in the last `startup_days` x 24 h would have (0: nothing): heals a timer-only restart.
    startup_days: ClassVar[float] = 2
    #: The collection this bolt writes.
    collection: ClassVar[str] = ""
    #: The first tick comes this many seconds after start (it loads the periods a previous run
    #: left dirty, so a restart brings timer figures back without waiting a whole tick_seconds).
    first_tick_seconds: ClassVar[float | None] = 5.0
    #: Where timer bolts keep the periods still to recompute (part of each flush: checkpointed state).
    STATE_COLLECTION: ClassVar[str] = "bolt_state"
    #: State topic -> the membership set whose period keys stand for its tuples (start-up scan).
    sources: ClassVar[dict[str, str]] = {}

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        refresh = self.option("refresh_seconds", type(self).refresh_seconds)
        self.refresh_seconds = None if refresh is None else float(refresh)
        self.cache_sets = int(self.option("cache_sets", type(self).cache_sets))
        self.startup_days = float(self.option("startup_days", type(self).startup_days))
        self._scanned = self.startup_days <= 0
        #: Periods to recompute on the next tick.
        self.dirty: set[PeriodKey] = set()
        #: Every (game, area, plat) a state tuple has named (for the wall-clock refresh).
        self.servers: set[tuple[str, str, str]] = set()
        #: Periods recomputed so far, and documents written (for tests and status).
        self.recomputed = 0
        self.written = 0
        self._upserts: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._last_refresh: float | None = None
        #: The dirty periods as last stored (None: not loaded yet).
        self._stored_dirty: set[PeriodKey] | None = None

    # -- subclass hooks ----------------------------------------------------------------
    def dirtied(self, topic: str, day: int, tz: str) -> Iterable[int]:
        """Period starts made stale by a state tuple of `topic` for local day `day`."""
        raise NotImplementedError

    def current(self, now: int, tz: str) -> Iterable[int]:
        """Period starts that activity at wall-clock `now` can change (the refresh set)."""
        raise NotImplementedError

    def compute(self, key: PeriodKey, tz: str, sets: SetCache) -> dict[str, Any] | None:
        """The figures of one period, read from the store; None when there is nothing to record."""
        raise NotImplementedError

    # -- Bolt hooks --------------------------------------------------------------------
    def process(self, tup: Tuple) -> None:
        """Mark the periods a state tuple {game, area, plat, ts, ...} makes stale."""
        body = tup.body
        try:
            game, area, plat = (_text(body, f) for f in ("game", "area", "plat"))
            ts = body.get("ts", tup.ts)
            if isinstance(ts, bool) or not isinstance(ts, (int, float)):
                raise ValueError(f"body.ts must be a number, got {ts!r}")
        except (ValueError, AttributeError) as exc:
            self.reject(body, f"{tup.topic} state tuple: {exc}")
            return
        tz = self.settings.tz_of(game)
        day = _day_start(int(ts), tz)
        self.servers.add((game, area, plat))
        for start in self.dirtied(tup.topic, day, tz):
            self.dirty.add(PeriodKey(game, area, plat, start))

    def tick(self, now: float) -> None:
        """Recompute every dirty period (plus the current ones when a refresh is due)."""
        self._load_dirty()
        if not self._scanned:  # here, not in initialize(): a failure is retried next tick
            self.mark_from_store(int(now - self.startup_days * 86400))
            self._scanned = True
        if self.refresh_seconds is not None and (self._last_refresh is None
                                                 or now - self._last_refresh >= self.refresh_seconds):
            self._last_refresh = now
            for game, area, plat in self.servers:
                tz = self.settings.tz_of(game)
                for start in self.current(int(now), tz):
                    self.dirty.add(PeriodKey(game, area, plat, start))
        if not self.dirty:
            return
        todo, self.dirty = sorted(self.dirty), set()
        sets = SetCache(self.store, self.cache_sets)
        for i, key in enumerate(todo):
            try:
                fields = self.compute(key, self.settings.tz_of(key.game), sets)
            except BaseException:
                self.dirty.update(todo[i:])  # retried next tick (the store may be out)
                raise
            self.recomputed += 1
            if fields is not None:
                self._upserts.append((key.doc_key(), fields))
        self.log.debug("%s recomputed %d periods (%d member-set reads)", self.name, len(todo), sets.reads)

    def flush(self, batch: Batch) -> None:
        """Move the recomputed figures into the batch as $set upserts, with the periods still dirty.

        The dirty set is this bolt's state between ticks: stored with each flush that changed
        it, so a checkpoint acknowledged by this bolt covers the periods it has yet to recompute
        and a restart (which loads them back) recomputes them.
        """
        upserts, self._upserts = self._upserts, []
        for key, fields in upserts:
            batch.upsert(self.collection, key, set=fields)
        self.written += len(upserts)
        self._load_dirty()
        if self.dirty != self._stored_dirty:
            batch.upsert(self.STATE_COLLECTION, {"bolt": self.name},
                         set={"dirty": sorted([k.game, k.area, k.plat, k.ts] for k in self.dirty)})
            self._stored_dirty = set(self.dirty)

    def _load_dirty(self) -> None:
        """Once: add the periods a previous run stored as dirty (it stopped before recomputing them)."""
        if self._stored_dirty is not None:
            return
        stored: set[PeriodKey] = set()
        for doc in self.store.find(self.STATE_COLLECTION, {"bolt": self.name}, sort=()):
            for item in doc.get("dirty") or ():
                try:
                    game, area, plat, ts = item
                    stored.add(PeriodKey(str(game), str(area), str(plat), int(ts)))
                except (TypeError, ValueError):
                    self.reject(item, f"{self.STATE_COLLECTION}: bad dirty period {item!r:.80}")
        if stored:
            self.log.info("%s: %d period(s) left dirty by the previous run", self.name, len(stored))
        self.dirty |= stored
        self._stored_dirty = stored

    def mark_from_store(self, ts_from: int, ts_to: int | None = None) -> int:
        """Mark dirty what the state tuples of the days in [ts_from, ts_to) would; returns the days found.

        The days come from the store's membership sets (`sources`), so this
        re-derives dirty marks without any saved state: after a restart, or to
        recompute a range by hand.
        """
        found = 0
        for topic, set_name in self.sources.items():
            for mk in self.store.member_keys(set_name, ts_from=ts_from, ts_to=ts_to):
                if mk.sub:
                    continue
                self.process(Tuple(topic, "", mk.ts, {"game": mk.game, "area": mk.area, "plat": mk.plat,
                                                      "ts": mk.ts}))
                found += 1
        return found

    # -- helpers for subclasses --------------------------------------------------------
    def uids(self, collection: str, key: PeriodKey, ts_to: int) -> set[str]:
        """uids of the per-user documents of `collection` with key.ts <= ts < ts_to."""
        docs = self.store.find(collection, {"game": key.game, "area": key.area, "plat": key.plat},
                               ts_from=key.ts, ts_to=ts_to, sort=())
        return {str(d["uid"]) for d in docs if "uid" in d}

    def first_members(self, collection: str, key: PeriodKey, start: int, end: int, sets: SetCache,
                      days: BitMap | None = None) -> BitMap | None:
        """Who has the first day of `collection` (userfirst, rolefirst: FIRST_DAYS) in [start, end), as ids.

        Set algebra on the day bitmaps, |days in [start, end) - before(start)|, with no
        per-user first-day lookup and no uid decoded. `days`: the union of the day set
        over [start, end) when the caller has it. None when an older version stored
        first-day documents for this server: then only `uids(collection, ...)` is exact.
        """
        day_set = FIRST_DAYS[collection]
        if sets.legacy(collection, key.game, key.area, key.plat):
            return None
        if days is None:
            days = self.store.bitmap_between(day_set, key.game, key.area, key.plat, start, end, sub="")
        if not days:
            return BitMap()
        return days - sets.before(day_set, key.game, key.area, key.plat, start)

    def uid_bitmap(self, key: PeriodKey, uids: Iterable[str]) -> BitMap:
        """`uids` as the integer ids the member bitmaps of key.game hold (uids in no set are left out)."""
        return self.store.uid_bitmap(key.game, uids)


def _text(body: Mapping[str, Any], name: str) -> str:
    v = body.get(name)
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "":
        raise ValueError(f"body.{name} must be a non-empty string, got {v!r}")
    return str(v)
