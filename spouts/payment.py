"""The payment spout: per-day payment reports of the payment service.

A record (the seed's shape) is one day of one (game, area, plat):

    {"game": "dl", "area": "549140c8dbdb67794fc0fa3b", "plat": "2001", "ts": 1420646400,
     "users": {"3412825528": {"times": 1, "amount": 2.0}, ...}}

`ts` is the start of the day the service reports. The service may report the
same day again with more orders (late orders); such a report is a new record
with a new id, while an identical re-report has the same id (and the spout
does not even re-emit it). Sources: files or stdin (JSON lines, exactly like
the gamelog spout), or the payment service polled over HTTP:
GET url?game=<g>&start=<ts>&end=<ts> -> [record, ...]. See docs/spouts.md.
"""
from __future__ import annotations

from typing import Any, Callable

from analytics.config import ConfigError
from analytics.periods import add_days, day_start
from analytics.sources import HttpPoller, PolledReader, Reader, StateFile, canonical
from analytics.tuples import record_id
from spouts.base import Invalid, SourceSpout, as_epoch, as_int, as_number, as_str, parse_object, require

__all__ = ["PaymentSpout", "PaymentPoller"]


class PaymentPoller(PolledReader):
    """Polls the payment service per game with a time cursor, re-querying finished days.

    The cursor of a game is the start of the oldest day that may still change
    (today's start after a poll). Each poll asks [cursor, now]. When the game's
    day rolls over (in its own zone), the first poll of the new day still covers
    the previous day, and the previous day is asked again `requery_delay`
    seconds later to catch orders the service settles late. Records already
    emitted (same id) are not emitted again. Failures leave the cursor where it
    was: nothing is skipped.
    """

    def __init__(self, poller: HttpPoller, state: StateFile | None, *, games: list[str],
                 tz_of: Callable[[str], str], clock: Callable[[], float], requery_delay: float = 300.0,
                 start: int | None = None) -> None:
        self.poller = poller
        self.state = state
        self.tz_of = tz_of
        self.clock = clock
        self.requery_delay = requery_delay
        self.start = start
        self._names = list(games)
        self.restore(state.load() if state is not None else {})
        self._dirty = False

    def restore(self, position: dict[str, Any]) -> None:
        """Poll again from `position` (saved by `position()`; {} for the start)."""
        saved = (position or {}).get("games", {})
        self.games: dict[str, dict[str, Any]] = {}
        for g in self._names:
            st = saved.get(g) or {}
            self.games[g] = {"start": st.get("start"), "requery": [list(x) for x in st.get("requery", [])],
                             "seen": {k: list(v) for k, v in st.get("seen", {}).items()}}
        self._seen = {g: {k: set(v) for k, v in st["seen"].items()} for g, st in self.games.items()}
        self.poller.schedule(0.0)

    def _query(self, game: str, start: int, end: int) -> list[Any] | None:
        data = self.poller.get_json({"game": game, "start": start, "end": end})
        if data is None:
            return None
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data = data["records"]
        if not isinstance(data, list):
            reason = f"response: expected a JSON list of payment records from {self.poller.url}, got {str(data)[:120]}"
            self.poller.reject(canonical(data), reason)
            self.poller.fail(reason)
            return None
        return data

    def _fresh(self, game: str, records: list[Any], out: list[bytes]) -> None:
        seen = self._seen[game]
        for rec in records:
            raw = canonical(rec)
            day = str(rec.get("ts")) if isinstance(rec, dict) else "?"
            rid = record_id(raw)
            ids = seen.setdefault(day, set())
            if rid in ids:
                continue
            ids.add(rid)
            out.append(raw)

    def read(self, max_records: int) -> list[bytes] | None:
        if not self.poller.due():
            return []
        now = self.clock()
        out: list[bytes] = []
        try:
            for game, st in self.games.items():
                tz = self.tz_of(game)
                today = day_start(int(now), tz)
                if st["start"] is None:
                    st["start"] = day_start(int(self.start), tz) if self.start is not None else today
                for day, due in sorted(st["requery"]):
                    if now < due:
                        continue
                    got = self._query(game, day, add_days(day, 1, tz))
                    if got is None:
                        return out
                    self._fresh(game, got, out)
                    st["requery"].remove([day, due])
                got = self._query(game, st["start"], int(now))
                if got is None:
                    return out
                self._fresh(game, got, out)
                if today > st["start"]:  # the day rolled over: the previous day is asked again later
                    previous = add_days(today, -1, tz)
                    if not any(d == previous for d, _ in st["requery"]):
                        st["requery"].append([previous, now + self.requery_delay])
                    st["start"] = today
                keep = add_days(today, -2, tz)
                self._seen[game] = {k: v for k, v in self._seen[game].items() if k.isdigit() and int(k) >= keep}
            self.poller.schedule(self.poller.poll_seconds)
            return out
        finally:
            self._dirty = True

    def position(self) -> dict[str, Any]:
        return {"games": {g: {"start": st["start"], "requery": [list(x) for x in st["requery"]],
                              "seen": {k: sorted(v) for k, v in self._seen[g].items()}}
                          for g, st in self.games.items()}}


class PaymentSpout(SourceSpout):
    name = "payment"
    source = "payment"
    emits = ("payment",)

    def make_http_reader(self, url: str) -> Reader:
        games = self.option("game") or self.option("games")
        games = [games] if isinstance(games, str) else list(games or [])
        if not games or not all(isinstance(g, str) and g for g in games):
            raise ConfigError(f"{self.name}: polling {url} needs option 'game' (a name or a list of names), "
                              f"got {games!r}")
        start = self.option("start")
        return PaymentPoller(self.http_poller(url), self.state, games=games, tz_of=self.settings.tz_of,
                             clock=self.ctx.clock, requery_delay=float(self.option("requery_delay", 300.0)),
                             start=None if start is None else int(start))

    def parse(self, raw: bytes, now: float) -> dict[str, Any]:
        rec = parse_object(raw)
        game = as_str(require(rec, "game"), "game")
        area = as_str(require(rec, "area"), "area", ints=True)
        plat = as_str(require(rec, "plat"), "plat", ints=True)
        ts = as_epoch(require(rec, "ts"), "ts", now=now, max_future=self.max_future_seconds, min_ts=self.min_ts)
        users = require(rec, "users")
        if not isinstance(users, dict):
            raise Invalid(f"type: users must be an object of uid -> {{times, amount}}, got {type(users).__name__}")
        clean: dict[str, dict[str, Any]] = {}
        for uid, u in users.items():
            if not uid.strip():
                raise Invalid("type: users has an empty uid")
            if not isinstance(u, dict):
                raise Invalid(f"type: users.{uid} must be an object {{times, amount}}, got {type(u).__name__}")
            clean[uid] = {"times": as_int(require(u, "times", f"users.{uid}.times"), f"users.{uid}.times", minimum=0),
                          "amount": as_number(require(u, "amount", f"users.{uid}.amount"), f"users.{uid}.amount",
                                              minimum=0)}
        return {"game": game, "area": area, "plat": plat, "ts": ts, "users": clean}

    def handle(self, raw: bytes, now: float) -> None:
        body = self.parse(raw, now)
        self.emit("payment", body, id=record_id(raw), ts=body["ts"], raw=raw)
