"""Distinct-user counts per hour and per day: the generic logic behind login, signup, createrole.

The three seed bolt pairs (loginhour -> loginday, signuphour -> signupday,
createrolehour -> createroleday) differ only in names, so they share this module:
`bolts/login.py`, `bolts/signup.py` and `bolts/createrole.py` only declare a
`CountingKind` and two thin subclasses.

Flow for kind 'login' (the others are the same with their own names):

* ``loginhour`` subscribes ``gamelog.login_logcount``; per (game, area, plat, hour)
  it adds the uid to membership set ``login_hour`` and stores the set's size in
  ``loginhour.count``. After each flush it emits, per (game, area, plat, hour), the
  users it had not seen there since it started, as the seed's hour document
  shape {game, area, plat, ts: hour start, userlist: [...]} on ``login.hour``
  (one tuple per server-hour and up to `userlist_chunk` users, not one per user).
* ``loginday`` subscribes ``login.hour``; per (game, area, plat, day) it adds the users
  to ``login_day`` (size into ``loginday.count``), and after each flush emits one
  ``login.day`` tuple per touched day with the count read back from the store.
  Each user's first day (``userfirst``) is not written per user: the store derives
  it from the ``login_day`` sets (store.base.FIRST_DAYS), exact whatever the order
  of arrival, at one blob per touched period instead of one document per new user.

Exactness: membership rows have a unique key, so replays and duplicates change
nothing; no record-id dedupe is needed (dedupe = False). The in-memory "seen"
sets are bounded and only save repeated work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from analytics.aggregate import Keyed
from analytics.component import Bolt, Context
from analytics.periods import period_function
from analytics.schema import Collection
from analytics.store.base import Batch, MemberKey
from analytics.tuples import Tuple, derived_id
from bolts.common import PeriodKey, RecentMembers, ServerKey, gamelog_users, need_int, server_key

__all__ = ["CountingKind", "PeriodKey", "DistinctPeriods", "first_periods", "counting_collections",
           "HourCountBolt", "DayCountBolt"]


# -- pure aggregation --------------------------------------------------------------------

@dataclass(frozen=True)
class CountingKind:
    """The names of one distinct-user count ('login', 'signup', 'createrole')."""
    #: The stat documents' `type` field, and the stem of every other name.
    type: str
    #: Collection keyed {game, area, plat, uid} whose `ts` is the user's first day, derived by the
    #: store from the day set (store.base.FIRST_DAYS), or None.
    first_collection: str | None = None

    @property
    def source_topic(self) -> str:
        return f"gamelog.{self.type}_logcount"

    @property
    def hour_topic(self) -> str:
        return f"{self.type}.hour"

    @property
    def day_topic(self) -> str:
        return f"{self.type}.day"

    @property
    def hour_set(self) -> str:
        return f"{self.type}_hour"

    @property
    def day_set(self) -> str:
        return f"{self.type}_day"

    @property
    def hour_collection(self) -> str:
        return f"{self.type}hour"

    @property
    def day_collection(self) -> str:
        return f"{self.type}day"


class DistinctPeriods(Keyed[PeriodKey, set[str]]):
    """Users per (game, area, plat, period start) not yet written, plus a bounded memory.

    `add` puts a user into its period (computed from the event ts in the game's
    zone `tz`) and says whether the user is new for that period since this object
    was created (or since the period was forgotten); `take` hands over the users
    gathered since the last take. Only new users are gathered: one already
    remembered was taken before.
    """

    def __init__(self, period: str, keep_periods: int) -> None:
        super().__init__(set)
        self.period = period
        self._start = period_function(period)
        self._recent_periods = keep_periods
        self._recent = RecentMembers(keep_periods)

    def add(self, server: ServerKey, uid: str, ts: int, tz: str) -> tuple[PeriodKey, bool]:
        start = self._start(ts, tz)
        key = PeriodKey(server.game, server.area, server.plat, start)
        new = self._recent.add(server, start, uid)
        if new:
            pending = self._pending.get(key)     # slot(key), inlined: this runs per login record
            if pending is None:
                self._pending[key] = {uid}
            else:
                pending.add(uid)
        return key, new

    def forget(self) -> None:
        """Forget who was already taken (the pending users stay): they count as new again."""
        self._recent = RecentMembers(self._recent_periods)

    def add_all(self, server: ServerKey, uids: Iterable[str], ts: int, tz: str) -> None:
        """`add` of several users of one event time (a packed tuple, an hour's userlist): the
        period and its key are computed once, not once per user (the bolts' hot loop)."""
        start = self._start(ts, tz)
        recent = self._recent.add
        fresh = [uid for uid in uids if recent(server, start, uid)]
        if fresh:
            key = PeriodKey(server.game, server.area, server.plat, start)
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = set(fresh)
            else:
                pending.update(fresh)


def first_periods(pending: dict[PeriodKey, set[str]]) -> dict[tuple[str, str, str, str], int]:
    """Earliest period start per (game, area, plat, uid) in `pending` (for a $min 'first day')."""
    first: dict[tuple[str, str, str, str], int] = {}
    for key, uids in pending.items():
        for uid in uids:
            k = (key.game, key.area, key.plat, uid)
            if k not in first or key.ts < first[k]:
                first[k] = key.ts
    return first


def counting_collections(kind: CountingKind, hour_writer: str | None = None,
                         day_writer: str | None = None) -> list[Collection]:
    """The catalogue entries of one kind (its hour and day stat documents, its first-day docs);
    written by the bolts named as their collections unless told otherwise."""
    hour_writer = hour_writer or kind.hour_collection
    day_writer = day_writer or kind.day_collection
    key = ("game", "area", "plat", "ts")
    out = [
        Collection(kind.hour_collection, key, {
            "ts": "start of the hour (epoch seconds; the hour of the game's zone)",
            "count": f"distinct users with a {kind.type} record in the hour (size of set '{kind.hour_set}')",
            "type": f"always '{kind.type}'",
        }, userlist_set=kind.hour_set, doc=f"distinct {kind.type} users of one server in one hour",
            writer=hour_writer),
        Collection(kind.day_collection, key, {
            "ts": "start of the day in the game's time zone (epoch seconds)",
            "count": f"distinct users with a {kind.type} record in the day (size of set '{kind.day_set}')",
            "type": f"always '{kind.type}'",
        }, userlist_set=kind.day_set, doc=f"distinct {kind.type} users of one server in one day",
            writer=day_writer),
    ]
    if kind.first_collection:
        out.append(Collection(kind.first_collection, ("game", "area", "plat", "uid"), {
            "uid": "user id (gamelog data.acct)",
            "ts": f"start of the user's first {kind.type} day in the game's zone",
        }, doc=f"one user's first {kind.type} day on one server: derived by the store from the "
               f"'{kind.day_set}' sets (no document per user; docs/collections.md)", writer=day_writer))
    return out


# -- bolts -------------------------------------------------------------------------------

def _named_by_kind(cls: type[Bolt], name: str, topics: list[str], emits: list[str]) -> None:
    """A counting bolt's name and wiring follow from its kind, unless the class sets them itself."""
    for attr, value in (("name", name), ("topics", topics), ("emits", emits)):
        if attr not in cls.__dict__:
            setattr(cls, attr, value)


class HourCountBolt(Bolt):
    """Distinct users per hour from one gamelog op code; forwards each hour's new users to the day bolt."""

    #: Set by the subclass: which names it counts under.
    kind: ClassVar[CountingKind]
    #: How many hour starts the "already emitted" memory keeps.
    keep_periods: ClassVar[int] = 72
    #: Most users in one emitted hour tuple (bounds a frame's size).
    userlist_chunk: ClassVar[int] = 1000

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            k = cls.kind
            _named_by_kind(cls, k.hour_collection, [k.source_topic], [k.hour_topic])

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.periods = DistinctPeriods("hour", int(self.option("keep_periods", self.keep_periods)))

    def process(self, tup: Tuple) -> None:
        server, ts, uids = gamelog_users(tup.body)  # one record, or the spout's packed records (one slot)
        self.periods.add_all(server, uids, ts, self.settings.tz_of(server.game))

    def reset(self) -> None:
        """A source rewound: forward its users again even if they were forwarded before."""
        self.periods.forget()

    def flush(self, batch: Batch) -> None:
        k = self.kind
        chunk = int(self.option("userlist_chunk", self.userlist_chunk))
        for key, uids in self.periods.take().items():
            doc_key = key.doc_key()
            batch.upsert(k.hour_collection, doc_key, set={"type": k.type})
            batch.add_members(MemberKey(k.hour_set, *key), uids, count_into=(k.hour_collection, doc_key, "count"))
            ordered = sorted(uids)
            for i in range(0, len(ordered), chunk):
                part = ordered[i:i + chunk]
                # Published after this batch is stored; the day bolt's membership makes repeats harmless.
                self.emit(k.hour_topic, {**doc_key, "userlist": part},
                          id=derived_id(k.hour_topic, *key, *part), ts=key.ts)


class DayCountBolt(Bolt):
    """Distinct users per day from the hour bolt's tuples; emits the stored day count per touched day."""

    kind: ClassVar[CountingKind]
    #: How many day starts the "already written" memory keeps (two zones: two starts a day).
    keep_periods: ClassVar[int] = 8

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            k = cls.kind
            _named_by_kind(cls, k.day_collection, [k.hour_topic], [k.day_topic])

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.periods = DistinctPeriods("day", int(self.option("keep_periods", self.keep_periods)))
        self.touched: set[PeriodKey] = set()

    def process(self, tup: Tuple) -> None:
        body = tup.body
        server = server_key(body)
        ts, users = need_int(body, "ts"), body.get("userlist")
        if not isinstance(users, list) or not all(type(u) is str and u for u in users):
            raise ValueError(f"body.userlist must be a list of user ids, got {users!r:.80}")
        self.periods.add_all(server, users, ts, self.settings.tz_of(server.game))

    def reset(self) -> None:
        """A source rewound: write and announce its users' days again even if done before."""
        self.periods.forget()

    def flush(self, batch: Batch) -> None:
        k = self.kind
        pending = self.periods.take()
        for key, uids in pending.items():
            doc_key = key.doc_key()
            batch.upsert(k.day_collection, doc_key, set={"type": k.type})
            batch.add_members(MemberKey(k.day_set, *key), uids, count_into=(k.day_collection, doc_key, "count"))
        self.touched.update(pending)

    def after_flush(self) -> None:
        """Emit the stored distinct count of every day this flush touched (state, not a delta)."""
        k = self.kind
        for key in sorted(self.touched):
            count = self.store.count_members(MemberKey(k.day_set, *key))
            self.emit(k.day_topic, {**key.doc_key(), "count": count, "type": k.type},
                      id=derived_id(k.day_topic, *key, count), ts=key.ts)
        self.touched.clear()
