"""The user bolts: usercenter (latest user record per user) and userlevel (users by grade).

usercenter subscribes ``syncuser`` (the game's user records) and
``gamelog.level_logchange`` (a user reached a new level). Per user it keeps the
newest record: a syncuser record replaces the profile fields only if it is
newer (by record ts) than the one stored; the grade comes from whichever of the
syncuser records and level changes is newest. Ties on ts are broken by the
content, so the result does not depend on the order of delivery, and a replay
changes nothing (no dedupe needed). In flush the bolt reads the stored documents
of the touched servers and compares; one writer per partition makes that safe.
When a syncuser record wins, its rest_yuanbao also goes into ``userpay``. Every
document gets every field: a user known only from a level change has '' and 0 for
the profile until a syncuser record arrives (USERCENTER_DEFAULTS, $setOnInsert), and
a userpay document usercenter creates has 0 for the payment fields.
After a flush that changed grades it emits ``usercenter.grade`` {game, area, plat, ts}
per touched server.

userlevel subscribes ``usercenter.grade`` and recomputes the grade distribution
of each touched server from the stored usercenter documents ($set count per
grade, 0 for a grade nobody has any more).
"""
from __future__ import annotations

import time

import json
from collections import Counter
from typing import Any, ClassVar, Iterable, Mapping, NamedTuple

from analytics.component import Bolt, Context
from analytics.schema import Collection
from analytics.store.base import Batch
from analytics.tuples import Tuple, derived_id
from bolts.common import ServerKey, gamelog_event, need_int, need_number, need_str, server_key

__all__ = ["PROFILE_FIELDS", "UserKey", "Profile", "Grade", "UserUpdates", "changes_for",
           "USERCENTER_DEFAULTS", "USERPAY_DEFAULTS", "defaults_for", "level_distribution", "level_counts",
           "UserCenterBolt", "UserLevelBolt", "COLLECTIONS"]


# -- pure aggregation --------------------------------------------------------------------

#: syncuser fields kept in usercenter besides grade (which has its own timestamp).
PROFILE_FIELDS = ("name", "rest_yuanbao", "birthday", "acctid", "score", "login_time")


class UserKey(NamedTuple):
    game: str
    area: str
    plat: str
    uid: str

    @property
    def server(self) -> ServerKey:
        return ServerKey(self.game, self.area, self.plat)


class Profile(NamedTuple):
    """The profile part of one syncuser record, with its ts."""
    ts: int
    fields: dict[str, Any]

    def rank(self) -> tuple[int, str]:
        return self.ts, json.dumps(self.fields, sort_keys=True, default=str)


class Grade(NamedTuple):
    """A user's grade as of ts (from a syncuser record or a level change)."""
    ts: int
    grade: int

    def rank(self) -> tuple[int, int]:
        return self.ts, self.grade


def parse_syncuser(body: Mapping[str, Any]) -> tuple[UserKey, Profile, Grade]:
    """Validate a syncuser record; ValueError names the bad field."""
    if not isinstance(body, dict):
        raise ValueError(f"syncuser body must be an object, got {type(body).__name__}")
    s = server_key(body)
    key = UserKey(*s, need_str(body, "uid"))
    ts, grade = need_int(body, "ts"), need_int(body, "grade")
    need_number(body, "rest_yuanbao")
    fields = {f: body[f] for f in PROFILE_FIELDS if f in body}
    return key, Profile(ts, fields), Grade(ts, grade)


def parse_level_change(body: Mapping[str, Any]) -> tuple[UserKey, Grade]:
    """Validate a level_logchange gamelog body; the new level is data.grade."""
    ev = gamelog_event(body)
    return UserKey(ev.game, ev.area, ev.plat, ev.uid), Grade(ev.ts, need_int(ev.data, "grade", "body.data"))


class UserUpdates:
    """Per user, the best profile and the best grade seen since the last take."""

    def __init__(self) -> None:
        self._profiles: dict[UserKey, Profile] = {}
        self._grades: dict[UserKey, Grade] = {}

    def add_profile(self, key: UserKey, profile: Profile) -> None:
        cur = self._profiles.get(key)
        if cur is None or profile.rank() > cur.rank():
            self._profiles[key] = profile

    def add_grade(self, key: UserKey, grade: Grade) -> None:
        cur = self._grades.get(key)
        if cur is None or grade.rank() > cur.rank():
            self._grades[key] = grade

    def take(self) -> dict[UserKey, tuple[Profile | None, Grade | None]]:
        out = {k: (self._profiles.get(k), self._grades.get(k)) for k in {*self._profiles, *self._grades}}
        self._profiles, self._grades = {}, {}
        return out

    def put_back(self, taken: Mapping[UserKey, tuple[Profile | None, Grade | None]]) -> None:
        for k, (p, g) in taken.items():
            if p is not None:
                self.add_profile(k, p)
            if g is not None:
                self.add_grade(k, g)


def changes_for(doc: Mapping[str, Any] | None, profile: Profile | None, grade: Grade | None) -> dict[str, Any]:
    """The fields to $set on a stored usercenter document (None: none yet) so that it holds the newest data.

    Stored: the profile fields with `ts` (their record's ts), and `grade` with `grade_ts`.
    """
    doc = doc or {}
    out: dict[str, Any] = {}
    if profile is not None:
        if "ts" not in doc or profile.rank() > Profile(doc["ts"], {f: doc[f] for f in PROFILE_FIELDS
                                                                    if f in doc}).rank():
            out.update(profile.fields)
            out["ts"] = profile.ts
    if grade is not None:
        if "grade_ts" not in doc or grade.rank() > Grade(doc["grade_ts"], doc.get("grade", 0)).rank():
            out["grade"] = grade.grade
            out["grade_ts"] = grade.ts
    return out


#: What a usercenter document holds before any record gave the field (a user seen only in a
#: level change has no profile yet): '' for text, 0 for numbers and times.
USERCENTER_DEFAULTS: dict[str, Any] = {"name": "", "rest_yuanbao": 0, "birthday": 0, "acctid": "", "score": 0,
                                       "login_time": 0, "ts": 0, "grade": 0, "grade_ts": 0}
#: The payorderuser fields of a userpay document that usercenter creates (the user never paid).
USERPAY_DEFAULTS: dict[str, Any] = {"amount": 0, "times": 0, "ts": 0, "last_pay_day": 0}


def defaults_for(sets: Mapping[str, Any]) -> dict[str, Any]:
    """The $setOnInsert of a usercenter upsert: the defaults of the fields it does not $set."""
    return {f: v for f, v in USERCENTER_DEFAULTS.items() if f not in sets}


def level_distribution(docs: Iterable[Mapping[str, Any]]) -> dict[int, int]:
    """Users per grade among usercenter documents (documents without a grade are left out)."""
    return dict(Counter(d["grade"] for d in docs if isinstance(d.get("grade"), int)))


def level_counts(distribution: Mapping[int, int], stored_grades: Iterable[int]) -> dict[int, int]:
    """The count to store per grade: the distribution, plus 0 for stored grades nobody has now."""
    return {**{g: 0 for g in stored_grades}, **distribution}


# -- catalogue ---------------------------------------------------------------------------

COLLECTIONS = [
    Collection("usercenter", ("game", "area", "plat", "uid"), {
        "uid": "user id",
        "name": "user name (latest syncuser record)",
        "rest_yuanbao": "yuanbao balance (latest syncuser record)",
        "birthday": "account creation time, epoch seconds (latest syncuser record)",
        "acctid": "account name/e-mail (latest syncuser record)",
        "score": "score (latest syncuser record)",
        "login_time": "last login time, epoch seconds (latest syncuser record)",
        "ts": "ts of the syncuser record the fields above come from (0, and the fields above '' or 0, "
              "until a syncuser record arrives)",
        "grade": "current level: from the newest of the syncuser records and level_logchange records",
        "grade_ts": "ts of the record the grade comes from",
    }, doc="the latest known data of one user on one server", writer="usercenter"),
    Collection("userlevel", ("game", "area", "plat", "grade"), {
        "grade": "a level",
        "count": "users of the server whose current grade (usercenter.grade) is this level",
    }, doc="how many users of one server are at one level", writer="userlevel"),
]


# -- bolts -------------------------------------------------------------------------------

class UserCenterBolt(Bolt):
    """syncuser + level changes -> usercenter (newest wins), userpay.rest_yuanbao; emits usercenter.grade."""

    name = "usercenter"
    topics = ["syncuser", "gamelog.level_logchange"]
    emits = ["usercenter.grade"]
    #: After a rewind, how long every grade is announced again (covers what the source reads again).
    reannounce_seconds: ClassVar[float] = 120.0

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.updates = UserUpdates()
        #: Until then (monotonic seconds) announce every server whose grades come on usercenter.grade,
        #: even where the store already had them: after a source rewound, userlevel may have lost what
        #: this bolt announced before, and what is read again must reach it.
        self._announce_until = 0.0

    def reset(self) -> None:
        self._announce_until = time.monotonic() + self.reannounce_seconds

    def process(self, tup: Tuple) -> None:
        if tup.topic == "syncuser":
            key, profile, grade = parse_syncuser(tup.body)
            self.updates.add_profile(key, profile)
        else:
            key, grade = parse_level_change(tup.body)
        self.updates.add_grade(key, grade)

    def flush(self, batch: Batch) -> None:
        taken = self.updates.take()
        if not taken:
            return
        try:
            stored: dict[UserKey, dict[str, Any]] = {}
            for server in sorted({k.server for k in taken}):
                for d in self.store.find("usercenter", server._asdict()):
                    stored[UserKey(*server, d["uid"])] = d
        except Exception:
            self.updates.put_back(taken)   # a failed store read: keep it for the next flush
            raise
        regraded: dict[ServerKey, int] = {}
        for key, (profile, grade) in sorted(taken.items()):
            sets = changes_for(stored.get(key), profile, grade)
            if not sets:
                continue
            batch.upsert("usercenter", key._asdict(), set=sets, set_on_insert=defaults_for(sets))
            if "rest_yuanbao" in sets:
                batch.upsert("userpay", key._asdict(), set={"rest_yuanbao": sets["rest_yuanbao"]},
                             set_on_insert=USERPAY_DEFAULTS)
            if "grade" in sets:
                regraded[key.server] = max(regraded.get(key.server, 0), sets["grade_ts"])
        if time.monotonic() < self._announce_until:
            for key, (_, grade) in taken.items():
                if grade is not None:
                    regraded[key.server] = max(regraded.get(key.server, 0), grade.ts)
        for server, ts in sorted(regraded.items()):
            self.emit("usercenter.grade", {**server._asdict(), "ts": ts},
                      id=derived_id("usercenter.grade", *server, ts), ts=ts)


class UserLevelBolt(Bolt):
    """usercenter.grade -> userlevel: the grade distribution of each touched server, recomputed."""

    name = "userlevel"
    topics = ["usercenter.grade"]

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.touched: set[ServerKey] = set()

    def process(self, tup: Tuple) -> None:
        self.touched.add(server_key(tup.body))

    def flush(self, batch: Batch) -> None:
        for server in sorted(self.touched):
            where = server._asdict()
            dist = level_distribution(self.store.find("usercenter", where))
            old = [d["grade"] for d in self.store.find("userlevel", where)]
            for grade, count in sorted(level_counts(dist, old).items()):
                batch.upsert("userlevel", {**where, "grade": grade}, set={"count": count})
        self.touched.clear()
