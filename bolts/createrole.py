"""The createrole bolts: distinct createrole users per hour (createrolehour) and per day (createroleday).

All logic is generic and lives in bolts/counting.py; this file only names the kind
(the bolts' names, topics and emits follow from it).
createrolehour: gamelog.createrole_logcount -> set createrole_hour, docs createrolehour -> topic createrole.hour.
createroleday: createrole.hour -> set createrole_day (rolefirst derived from it), docs createroleday -> topic createrole.day.
"""
from __future__ import annotations

from bolts.counting import CountingKind, DayCountBolt, HourCountBolt, counting_collections

__all__ = ["KIND", "COLLECTIONS", "CreateRoleHourBolt", "CreateRoleDayBolt"]

KIND = CountingKind("createrole", first_collection="rolefirst")
COLLECTIONS = counting_collections(KIND)


class CreateRoleHourBolt(HourCountBolt):
    kind = KIND


class CreateRoleDayBolt(DayCountBolt):
    kind = KIND
