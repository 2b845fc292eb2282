"""The gamelog spout: game-server operation logs, one JSON object a line.

Input (the seed's shape):

    {"op": {"code": "login_logcount", "id": 1003}, "area": "549140c8dbdb67794fc0fa3b", "ts": 1420688004,
     "data": {"corpid": 2001, "type": "signin", "server_name": "server1009", "opno": 1003,
              "opname": "login_logcount", "acct": "3284681055"}}

Output: topic "gamelog.<op.code>" for the codes in GAMELOG_CODES, body
{game, area, plat, uid, ts, code, data}, id = record_id(line, game); the codes in
WHO_WHERE_WHEN leave `data` out and are packed (local-global aggregation, as Flink's):
the records of one chunk with the same code, server and 15-minute slot travel as one
tuple {game, area, plat, ts: the earliest, code, uids: [distinct users]}, id =
derived_id of their record ids (a chunk with one such record sends it as it is).
A valid record with another code is counted as ignored. Sources: files (followed, with saved
offsets), stdin, or an HTTP endpoint paged with a cursor. See docs/spouts.md.
"""
from __future__ import annotations

import sys
from typing import Any

from analytics.component import Context
from analytics.config import ConfigError, Settings
from analytics.schema import GAMELOG_CODES
from analytics.sources import CursorPoller, Reader
from analytics.tuples import derived_id, record_id
from spouts.base import Invalid, SourceSpout, as_epoch, as_str, parse_object, require

__all__ = ["GamelogSpout", "GAMELOG_CODES", "WHO_WHERE_WHEN", "feed_stdin"]



#: Codes whose bolts count distinct users (who, where, when) and read nothing of `data`:
#: their tuples leave it out, which more than halves what every subscriber decodes
#: (measured: 0.6 against 2.0 us a tuple). The whole line stays in the disk log.
WHO_WHERE_WHEN: frozenset[str] = frozenset({"login_logcount", "signup_logcount", "createrole_logcount"})

#: Seconds of a packing slot: every UTC offset is a multiple of 15 minutes, so the records
#: of one slot share their local hour and day in any zone.
PACK_SLOT = 900


class GamelogSpout(SourceSpout):
    name = "gamelog"
    source = "gamelog"
    emits = tuple(f"gamelog.{code}" for code in GAMELOG_CODES)

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        game = self.option("game")
        if not isinstance(game, str) or not game:
            raise ConfigError(f"{self.name}: option 'game' (the game these logs belong to) is required, "
                              f"e.g. [sources.gamelog] game = \"dl\"; got {game!r}")
        self.game = game
        self._topics = {code: f"gamelog.{code}" for code in GAMELOG_CODES}
        #: Pack the who-where-when records of a chunk per (code, server, slot) (option pack_users).
        self.pack_users = bool(self.option("pack_users", True))
        self._packs: dict[tuple[str, str, str, int], tuple[dict[str, Any], dict[str, None], list[str]]] = {}

    def make_http_reader(self, url: str) -> Reader:
        return CursorPoller(self.http_poller(url), self.state, limit=int(self.option("limit", 500)),
                            start_cursor=self.option("cursor", ""))

    def parse(self, raw: bytes, now: float) -> dict[str, Any]:
        """The body of one raw gamelog line (raises Invalid with the reason)."""
        rec = parse_object(raw)
        body = self._parse_fast(rec, now)
        return body if body is not None else self._parse_checked(rec, now)

    def _parse_fast(self, rec: dict[str, Any], now: float) -> dict[str, Any] | None:
        """The well-formed common case with exact type checks; None sends it to the checked path."""
        op, data, area, ts = rec.get("op"), rec.get("data"), rec.get("area"), rec.get("ts")
        if type(op) is not dict or type(data) is not dict or type(ts) is not int:
            return None
        code, plat, uid = op.get("code"), data.get("corpid"), data.get("acct")
        if not (type(code) is str and code and type(area) is str and area.strip()
                and self.min_ts <= ts <= now + self.max_future_seconds):
            return None
        plat = plat if type(plat) is str and plat.strip() else str(plat) if type(plat) is int else None
        uid = uid if type(uid) is str and uid.strip() else str(uid) if type(uid) is int else None
        if plat is None or uid is None:
            return None
        return {"game": self.game, "area": area, "plat": plat, "uid": uid, "ts": ts, "code": code, "data": data}

    def _parse_checked(self, rec: dict[str, Any], now: float) -> dict[str, Any]:
        """Field by field, so a bad record is rejected with the exact reason."""
        op = require(rec, "op")
        if not isinstance(op, dict):
            raise Invalid(f"type: op must be an object, got {type(op).__name__}")
        code = as_str(require(op, "code", "op.code"), "op.code")
        area = as_str(require(rec, "area"), "area", ints=True)
        ts = as_epoch(require(rec, "ts"), "ts", now=now, max_future=self.max_future_seconds, min_ts=self.min_ts)
        data = require(rec, "data")
        if not isinstance(data, dict):
            raise Invalid(f"type: data must be an object, got {type(data).__name__}")
        plat = as_str(require(data, "corpid", "data.corpid"), "data.corpid", ints=True)
        uid = as_str(require(data, "acct", "data.acct"), "data.acct", ints=True)
        return {"game": self.game, "area": area, "plat": plat, "uid": uid, "ts": ts, "code": code, "data": data}

    def handle(self, raw: bytes, now: float) -> None:
        body = self.parse(raw, now)
        topic = self._topics.get(body["code"])
        if topic is None:
            self.counters.ignored += 1
            return
        if body["code"] in WHO_WHERE_WHEN:
            del body["data"]
            if self.pack_users:
                self._pack(topic, body, raw)
                return
        self.emit(topic, body, id=record_id(raw, self.game), ts=body["ts"], raw=raw)

    def _pack(self, topic: str, body: dict[str, Any], raw: bytes) -> None:
        """Hold a who-where-when record for its chunk's packed tuple (its raw line goes to the disk log now)."""
        if self.disk_log is not None:
            self.disk_log.append(raw)
        ts = body["ts"]
        key = (topic, body["area"], body["plat"], ts // PACK_SLOT)
        rid = record_id(raw, self.game)
        pack = self._packs.get(key)
        if pack is None:
            self._packs[key] = (body, {body["uid"]: None}, [rid])
            return
        first, uids, ids = pack
        uids[body["uid"]] = None
        ids.append(rid)
        if ts < first["ts"]:
            first["ts"] = ts

    def end_chunk(self) -> None:
        """Send the chunk's packed tuples: one per (code, server, slot), the lone records as they are."""
        packs, self._packs = self._packs, {}
        for (topic, *_), (first, uids, ids) in packs.items():
            if len(ids) == 1:
                self.emit(topic, first, id=ids[0], ts=first["ts"])  # its raw line is in the disk log
                continue
            body = {"game": first["game"], "area": first["area"], "plat": first["plat"], "ts": first["ts"],
                    "code": first["code"], "uids": list(uids)}
            self.emit(topic, body, id=derived_id(*ids), ts=body["ts"])
            self.counters.combined += len(ids) - 1


def feed_stdin(settings: Settings, game: str | None = None, *, stream: Any = None,
               name: str = "gamelog_stdin", connect_timeout: float = 10.0) -> dict[str, int]:
    """Feed gamelog lines from stdin into a running topology's receiver; returns the counts.

    The lines usually come from a disk log already, so this spout writes none.
    Its producer name differs from the live spout's, so the bolts' per-producer
    counts (and the end-of-stream check) stay exact for both. Returns when stdin
    ends and every queued frame was handed to the receiver.
    """
    from analytics.transport import new_context

    zctx = new_context(settings)
    game = game or settings.sources.get("gamelog", {}).get("game")
    ctx = Context(settings=settings, zmq=zctx, receiver=settings.broker.receiver, sender=settings.broker.sender,
                  disk_log=False)
    spout = GamelogSpout(ctx, name, game=game, stdin=stream if stream is not None else True,
                         files=None, http=None)
    try:
        probe = spout._publisher(immediate=True)
        try:
            if not probe.wait_connected(connect_timeout):
                refused = (f", or it refused the CURVE key of {settings.broker.curve_keys}/client.key"
                           if settings.broker.curve_keys else "")
                raise ConnectionError(f"no broker is listening at {settings.broker.receiver} after "
                                      f"{connect_timeout:g}s (is the topology running? `analytics start`{refused})")
        finally:
            probe.close(linger_ms=0)
        spout.run()
    finally:
        zctx.term()  # the publisher's LINGER lets queued frames go out first
    c = spout.counters
    accepted = sum(c.emitted.values()) + c.combined
    counts = {"read": accepted + c.rejected + c.ignored + c.errors, "accepted": accepted,
              "rejected": c.rejected, "ignored": c.ignored, "errors": c.errors}
    return counts


def main(argv: list[str] | None = None) -> int:
    """`read_stdin_gamelog [--game NAME] [--config F]`."""
    import argparse

    from analytics.config import load_settings
    from analytics.logs import setup_logging

    parser = argparse.ArgumentParser(prog="read_stdin_gamelog",
                                     description="Feed gamelog lines from stdin into a running topology.")
    parser.add_argument("--game", help="game the lines belong to (default: [sources.gamelog] game)")
    parser.add_argument("--config", help="configuration file (default: $ANALYTICS_CONFIG)")
    parser.add_argument("--receiver", help="receiver endpoint (default: [broker] receiver)")
    parser.add_argument("--connect-timeout", type=float, default=10.0,
                        help="seconds to wait for the broker before giving up (default 10)")
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    try:
        settings = load_settings(args.config)
        if args.receiver:
            settings.broker.receiver = args.receiver
        counts = feed_stdin(settings, args.game, connect_timeout=args.connect_timeout)
    except ConfigError as exc:
        print(f"read_stdin_gamelog: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"read_stdin_gamelog: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    print(f"read_stdin_gamelog: read {counts['read']}, accepted {counts['accepted']}, "
          f"rejected {counts['rejected']}, ignored {counts['ignored']}"
          + (f", errors {counts['errors']}" if counts["errors"] else "")
          + f" -> {settings.broker.receiver}", file=sys.stderr)
    return 0 if counts["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
