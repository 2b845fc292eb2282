"""The login bolts: distinct login users per hour (loginhour) and per day (loginday).

All logic is generic and lives in bolts/counting.py; this file only names the kind
(the bolts' names, topics and emits follow from it).
loginhour: gamelog.login_logcount -> set login_hour, docs loginhour -> topic login.hour.
loginday: login.hour -> set login_day (userfirst derived from it), docs loginday -> topic login.day.
"""
from __future__ import annotations

from bolts.counting import CountingKind, DayCountBolt, HourCountBolt, counting_collections

__all__ = ["KIND", "COLLECTIONS", "LoginHourBolt", "LoginDayBolt"]

KIND = CountingKind("login", first_collection="userfirst")
COLLECTIONS = counting_collections(KIND)


class LoginHourBolt(HourCountBolt):
    kind = KIND


class LoginDayBolt(DayCountBolt):
    kind = KIND
