"""The syncuser spout: user records synchronised from the games' user databases.

A record (the seed's shape):

    {"game": "wsdx", "area": "54598574dbdb677b6226a5df", "plat": "1059", "ts": 1423213068,
     "uid": "141560631361753593", "name": "superman", "grade": 3, "rest_yuanbao": 200,
     "birthday": 1418637569, "acctid": "kutheso@hotmail.com", "score": 930, "login_time": 1418888736}

Sources: files or stdin (JSON lines), or HTTP polled with a time cursor:
GET url?since=<ts> -> [record, ...] (records with ts >= since). See docs/spouts.md.
"""
from __future__ import annotations

from typing import Any

from analytics.tuples import record_id
from spouts.base import Invalid, SourceSpout, as_epoch, as_int, as_number, as_str, parse_object, require

__all__ = ["SyncUserSpout"]


class SyncUserSpout(SourceSpout):
    name = "syncuser"
    source = "syncuser"
    emits = ("syncuser",)

    def parse(self, raw: bytes, now: float) -> dict[str, Any]:
        rec = parse_object(raw)
        ts = as_epoch(require(rec, "ts"), "ts", now=now, max_future=self.max_future_seconds, min_ts=self.min_ts)
        name = require(rec, "name")
        if not isinstance(name, str):
            raise Invalid(f"type: name must be a string, got {name!r:.60}")
        score = require(rec, "score")
        return {
            "game": as_str(require(rec, "game"), "game"),
            "area": as_str(require(rec, "area"), "area", ints=True),
            "plat": as_str(require(rec, "plat"), "plat", ints=True),
            "ts": ts,
            "uid": as_str(require(rec, "uid"), "uid", ints=True),
            "name": name,
            "grade": as_int(require(rec, "grade"), "grade", minimum=0),
            "rest_yuanbao": as_int(require(rec, "rest_yuanbao"), "rest_yuanbao", minimum=0),
            "birthday": as_int(require(rec, "birthday"), "birthday", minimum=0),
            "acctid": as_str(require(rec, "acctid"), "acctid", ints=True),
            "score": as_int(score, "score") if isinstance(score, int) else as_number(score, "score"),
            "login_time": as_int(require(rec, "login_time"), "login_time", minimum=0),
        }

    def handle(self, raw: bytes, now: float) -> None:
        body = self.parse(raw, now)
        self.emit("syncuser", body, id=record_id(raw), ts=body["ts"], raw=raw)
