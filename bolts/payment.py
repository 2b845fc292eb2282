"""The payorderuser bolt: payers and takings per day, per-user payment details and totals.

Input: topic ``payment``, the payment service's record
{game, area, plat, ts, users: {uid: {times, amount}}}.

Semantics (decided): a payment record is the service's *cumulative* per-user
totals for that day so far, a snapshot. A later snapshot supersedes an earlier
one, so per (game, area, plat, day, uid) the bolt keeps the $max of times and the
$max of amount. That is idempotent under replays and indifferent to the order of
delivery, so no record-id dedupe is needed. The record's day is
day_start(ts, zone of the game) (the service reports ts as the day start).

What one flush writes, in one atomic batch:

* ``payorderdetail`` {game, area, plat, ts=day, uid}: times, amount ($max).
* membership set ``pay_day`` (the day's payers), its size into ``payorderuser.count``.
* ``payorderuser`` {game, area, plat, ts=day}: pay_amount and pay_count, the sums
  over that day's payorderdetail documents (stored ones merged with this flush's),
  $set; type 'payorderuser'.
* ``userpay`` {game, area, plat, uid}: ts = first pay day, last_pay_day, amount and
  times = the user's totals over all days (recomputed the same way, $set);
  rest_yuanbao 0 on insert (usercenter sets it).

Then (published only once the batch is stored) one ``payorderuser.day`` tuple per
touched day: {game, area, plat, ts, count, pay_amount, pay_count, type}, the
figures just stored. The stored payorderdetail documents are read inside flush;
one writer per partition makes that read-then-write safe.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple

from analytics.aggregate import Keyed
from analytics.component import Bolt, Context
from analytics.measures import money_sum
from analytics.periods import day_start
from analytics.schema import Collection
from analytics.store.base import Batch, MemberKey
from analytics.tuples import Tuple, derived_id
from bolts.common import ServerKey, need_int, need_number, need_str, server_key

__all__ = ["DetailKey", "Totals", "PaymentSnapshots", "merge_max", "money_sum", "day_totals", "user_totals",
           "PayOrderUserBolt", "COLLECTIONS"]


# -- pure aggregation --------------------------------------------------------------------

class DetailKey(NamedTuple):
    """One payorderdetail document: a user's totals on one day of one server."""
    game: str
    area: str
    plat: str
    ts: int
    uid: str

    @property
    def server(self) -> ServerKey:
        return ServerKey(self.game, self.area, self.plat)


class Totals(NamedTuple):
    times: int
    amount: float

    def max(self, other: "Totals") -> "Totals":
        return Totals(max(self.times, other.times), max(self.amount, other.amount))


class DayTotals(NamedTuple):
    count: int          # distinct payers
    pay_count: int      # sum of times
    pay_amount: float   # sum of amount


class UserTotals(NamedTuple):
    times: int
    amount: float
    first_day: int
    last_day: int


def parse_payment(body: Mapping[str, Any], tz: str) -> dict[DetailKey, Totals]:
    """Validate a payment record and return its per-user day totals. ValueError names the bad field."""
    if not isinstance(body, Mapping):
        raise ValueError(f"payment body must be an object, got {type(body).__name__}")
    server = server_key(body)
    day = day_start(need_int(body, "ts"), tz)
    users = body.get("users")
    if not isinstance(users, Mapping):
        raise ValueError(f"body.users must be an object of uid -> {{times, amount}}, got {users!r}")
    out: dict[DetailKey, Totals] = {}
    for uid, v in users.items():
        where = f"body.users[{uid!r}]"
        if not isinstance(v, Mapping):
            raise ValueError(f"{where} must be an object {{times, amount}}, got {v!r}")
        times, amount = need_int(v, "times", where), need_number(v, "amount", where)
        if times < 0 or amount < 0:
            raise ValueError(f"{where} has a negative total: times={times!r} amount={amount!r}")
        uid = str(uid)
        if not uid:
            raise ValueError("body.users has an empty uid")
        out[DetailKey(*server, day, uid)] = Totals(times, amount)
    return out


def merge_max(into: dict[Any, Totals], more: Mapping[Any, Totals]) -> dict[Any, Totals]:
    """Fold snapshots: per key the larger times and the larger amount. Returns `into`."""
    for k, t in more.items():
        cur = into.get(k)
        into[k] = t if cur is None else cur.max(t)
    return into


def day_totals(per_user: Mapping[str, Totals]) -> DayTotals:
    """A day's payers, payment count and takings from its per-user totals."""
    return DayTotals(len(per_user), sum(t.times for t in per_user.values()),
                     money_sum(t.amount for t in per_user.values()))


def user_totals(per_day: Mapping[int, Totals]) -> UserTotals:
    """A user's totals over all days from the per-day totals (needs at least one day)."""
    if not per_day:
        raise ValueError("user_totals of no days")
    return UserTotals(sum(t.times for t in per_day.values()), money_sum(t.amount for t in per_day.values()),
                      min(per_day), max(per_day))


class PaymentSnapshots(Keyed[DetailKey, Totals]):
    """Snapshots gathered since the last take, already max-merged per (server, day, uid)."""

    def add(self, body: Mapping[str, Any], tz: str) -> int:
        """Fold one payment record in; returns how many user entries it had."""
        totals = parse_payment(body, tz)
        merge_max(self._pending, totals)
        return len(totals)

    def put_back(self, pending: Mapping[DetailKey, Totals]) -> None:
        """Return what a failed flush took (merging keeps it exact)."""
        merge_max(self._pending, pending)


def _stored(docs: Iterable[Mapping[str, Any]]) -> dict[DetailKey, Totals]:
    return {DetailKey(d["game"], d["area"], d["plat"], d["ts"], d["uid"]): Totals(d.get("times", 0), d.get("amount", 0))
            for d in docs}


# -- catalogue ---------------------------------------------------------------------------

COLLECTIONS = [
    Collection("payorderdetail", ("game", "area", "plat", "ts", "uid"), {
        "ts": "start of the day in the game's zone",
        "uid": "paying user id",
        "times": "the user's payments that day (largest snapshot seen, $max)",
        "amount": "the user's amount paid that day (largest snapshot seen, $max)",
    }, doc="one user's payment totals on one day of one server", writer="payorderuser"),
    Collection("payorderuser", ("game", "area", "plat", "ts"), {
        "ts": "start of the day in the game's zone",
        "count": "distinct payers that day (size of set 'pay_day')",
        "pay_amount": "sum of that day's payorderdetail amounts (the seed's misspelt pay_amout)",
        "pay_count": "sum of that day's payorderdetail times",
        "type": "always 'payorderuser'",
    }, userlist_set="pay_day", doc="payers and takings of one server on one day", writer="payorderuser"),
    Collection("userpay", ("game", "area", "plat", "uid"), {
        "uid": "user id",
        "ts": "start of the user's first pay day (min of payorderdetail.ts); 0 if the user never paid",
        "last_pay_day": "start of the user's latest pay day (max of payorderdetail.ts); 0 if the user never paid",
        "amount": "the user's amount paid over all days (sum of payorderdetail); 0 if the user never paid",
        "times": "the user's payments over all days (sum of payorderdetail); 0 if the user never paid",
        "rest_yuanbao": "the user's yuanbao balance from the latest syncuser record (written by usercenter; "
                        "0 until one arrives)",
    }, doc="one user's payment history summary and yuanbao balance on one server", writer="payorderuser"),
]


# -- bolt --------------------------------------------------------------------------------

class PayOrderUserBolt(Bolt):
    """Payment snapshots -> payorderdetail, pay_day, payorderuser, userpay; emits payorderuser.day."""

    name = "payorderuser"
    topics = ["payment"]
    emits = ["payorderuser.day"]

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.snapshots = PaymentSnapshots()

    def process(self, tup: Tuple) -> None:
        game = need_str(tup.body, "game") if isinstance(tup.body, Mapping) else ""
        if self.snapshots.add(tup.body, self.settings.tz_of(game)) == 0:
            self.counters.ignored += 1

    def flush(self, batch: Batch) -> None:
        pending = self.snapshots.take()
        if not pending:
            return
        try:
            self._write(batch, pending)
        except Exception:
            self.snapshots.put_back(pending)   # a failed store read: keep it for the next flush
            raise

    def _write(self, batch: Batch, pending: dict[DetailKey, Totals]) -> None:
        # Everything stored for the touched servers, merged with this flush: the state after the write.
        merged: dict[DetailKey, Totals] = {}
        for server in sorted({k.server for k in pending}):
            merge_max(merged, _stored(self.store.find("payorderdetail", server._asdict())))
        merge_max(merged, pending)

        by_day: dict[tuple[ServerKey, int], dict[str, Totals]] = {}
        by_user: dict[tuple[ServerKey, str], dict[int, Totals]] = {}
        for k, t in merged.items():
            by_day.setdefault((k.server, k.ts), {})[k.uid] = t
            by_user.setdefault((k.server, k.uid), {})[k.ts] = t

        payers_by_day: dict[tuple[ServerKey, int], set[str]] = {}
        for k, t in pending.items():
            batch.upsert("payorderdetail", k._asdict(), max={"times": t.times, "amount": t.amount})
            payers_by_day.setdefault((k.server, k.ts), set()).add(k.uid)
        for (server, day), payers in sorted(payers_by_day.items()):
            doc_key = {**server._asdict(), "ts": day}
            totals = day_totals(by_day[(server, day)])
            batch.add_members(MemberKey("pay_day", *server, day), payers, count_into=("payorderuser", doc_key, "count"))
            batch.upsert("payorderuser", doc_key, set={"pay_amount": totals.pay_amount, "pay_count": totals.pay_count,
                                                       "type": "payorderuser"})
            body = {**doc_key, "count": totals.count, "pay_amount": totals.pay_amount, "pay_count": totals.pay_count,
                    "type": "payorderuser"}
            self.emit("payorderuser.day", body, ts=day,
                      id=derived_id("payorderuser.day", *server, day, totals.count, totals.pay_amount, totals.pay_count))
        for server, uid in sorted({(k.server, k.uid) for k in pending}):
            u = user_totals(by_user[(server, uid)])
            # Recomputed from every stored day of the user, so $set is exact (ts was 0 if usercenter
            # wrote the document first); rest_yuanbao is usercenter's, 0 until it writes one.
            batch.upsert("userpay", {**server._asdict(), "uid": uid},
                         set={"amount": u.amount, "times": u.times, "ts": u.first_day, "last_pay_day": u.last_day},
                         set_on_insert={"rest_yuanbao": 0})
