"""The signup bolts: distinct signup users per hour (signuphour) and per day (signupday).

All logic is generic and lives in bolts/counting.py; this file only names the kind
(the bolts' names, topics and emits follow from it).
signuphour: gamelog.signup_logcount -> set signup_hour, docs signuphour -> topic signup.hour.
signupday: signup.hour -> set signup_day, docs signupday -> topic signup.day.
"""
from __future__ import annotations

from bolts.counting import CountingKind, DayCountBolt, HourCountBolt, counting_collections

__all__ = ["KIND", "COLLECTIONS", "SignupHourBolt", "SignupDayBolt"]

KIND = CountingKind("signup", first_collection=None)
COLLECTIONS = counting_collections(KIND)


class SignupHourBolt(HourCountBolt):
    kind = KIND


class SignupDayBolt(DayCountBolt):
    kind = KIND
