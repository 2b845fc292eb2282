"""A deterministic sample-data generator: gamelog, payment and syncuser JSON-lines files.

    from analytics.sample import generate
    summary = generate("data", seed=7, games={"dl": "Asia/Shanghai", "wsdx": "America/New_York"},
                       days=2, users=40)

writes, in the seed's record shapes (see docs/collections.md for the op codes' data):

* ``gamelog_<game>_<tag>.txt``: one file per game (a gamelog record does not name
  its game: the gamelog spout's `game` option does), every op code the bolts use,
  a few exact duplicate lines (same record id) and a few malformed lines;
* ``payment_<tag>.txt``: per (game, area, plat, day) several cumulative snapshots
  of the day's per-user totals, the later ones superseding the earlier;
* ``syncuser_<tag>.txt``: user records, some of them older than one already written.

The same arguments always give the same bytes. `generate` returns a `Summary`
with the files and the true figures (distinct users, sums) computed from the
records themselves, so a test can compare what the pipeline stored.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from analytics.periods import add_days, day_start, hour_start

__all__ = ["generate", "Summary", "OPNO", "DEFAULT_GAMES", "START"]

#: op code -> op id / data.opno.
OPNO = {"signup_logcount": 1001, "createrole_logcount": 1002, "login_logcount": 1003, "coin_logchange": 2001,
        "shop_logbuy": 2002, "fuben_logchange": 3001, "trunk_task_accept": 4001, "trunk_task_finish": 4002,
        "level_logchange": 5001}
#: Two games in different zones: 'dl' in UTC+8 (the seed's data), 'wsdx' in New York.
DEFAULT_GAMES = {"dl": "Asia/Shanghai", "wsdx": "America/New_York"}
#: 2015-01-07 00:00 UTC: the sample's days start here (in each game's own zone).
START = 1420588800
_AREAS = {"dl": "549140c8dbdb67794fc0fa3b", "wsdx": "54598574dbdb677b6226a5df"}
_PLATS = ("2001", "1059")
_ITEMS = {"i101": ("potion", 5), "i102": ("mount", 100), "i103": ("wing", 60)}
_FUBEN = {"f1": "Dragon Cave", "f2": "Frozen Tower"}
_TASKS = {"t1": "The First Step", "t2": "Into the Woods", "t3": "The Gate"}
_MALFORMED = ['not json at all', '{"op": {"code": "login_logcount"}, "area": "x", "ts": 1420646400}',
              '{"op": {"code": "login_logcount", "id": 1003}, "area": "a", "ts": "yesterday", "data": {}}']


@dataclass
class Summary:
    """What was written, and the true figures of the distinct valid records."""
    files: dict[str, Path] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    #: (set, game, area, plat, period start) -> members: login_hour/day, signup_day, createrole_day, coin_day.
    members: dict[tuple[str, str, str, str, int], set[str]] = field(default_factory=dict)
    #: (game, area, plat, day) -> {uid: (times, amount)}: the last (largest) snapshot per user.
    payments: dict[tuple[str, str, str, int], dict[str, tuple[int, float]]] = field(default_factory=dict)
    #: (game, area, plat, day) -> (consumed, gained) of yuanbao.
    coin_day: dict[tuple[str, str, str, int], tuple[int, int]] = field(default_factory=dict)
    #: (game, area, plat, day, item) -> (count, buy_times, cost).
    shop: dict[tuple[str, str, str, int, str], tuple[int, int, int]] = field(default_factory=dict)
    #: (game, area, plat, uid) -> the grade of the user's newest record (syncuser or level change).
    grades: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    #: (game, area) -> earliest gamelog ts.
    first_seen: dict[tuple[str, str], int] = field(default_factory=dict)


def _line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def generate(out_dir: str | Path, *, seed: int = 1, games: Mapping[str, str] | None = None, days: int = 2,
             users: int = 40, tag: str = "sample", duplicates: float = 0.02, malformed: bool = True,
             areas: int = 1, activity: float = 0.65, start: int = START) -> Summary:
    """Write the sample files into out_dir (created if needed); returns what was written and the truth.

    `areas` game servers per game (users are spread over them), `activity` the chance that a
    user plays on a given day, `start` the first day (its day start in each game's zone).
    The defaults give the committed sample's bytes.
    """
    games = dict(games or DEFAULT_GAMES)
    if days < 1 or users < 1 or areas < 1:
        raise ValueError(f"days, users and areas must be >= 1, got days={days!r} users={users!r} areas={areas!r}")
    if not 0 < activity <= 1:
        raise ValueError(f"activity must be in (0, 1], got {activity!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    s = Summary()
    payment_lines: list[tuple[int, str]] = []
    sync_lines: list[tuple[int, str]] = []
    grade_at: dict[tuple[str, str, str, str], tuple[int, int]] = {}

    def member(set_: str, game: str, area: str, plat: str, ts: int, uid: str) -> None:
        s.members.setdefault((set_, game, area, plat, ts), set()).add(uid)

    def newer_grade(k: tuple[str, str, str, str], ts: int, grade: int) -> None:
        if k not in grade_at or (ts, grade) > grade_at[k]:
            grade_at[k] = (ts, grade)

    for game, tz in games.items():
        base_area = _AREAS.get(game, f"area-{game}")
        area_ids = [base_area] + [f"{base_area}-{k}" for k in range(1, areas)]
        gamelog: list[tuple[int, str]] = []
        first_day = day_start(start, tz)
        people = [(f"{game[:2]}{i:05d}", _PLATS[i % len(_PLATS)]) for i in range(users)]
        area_of = {uid: area_ids[(i // len(_PLATS)) % areas] for i, (uid, _) in enumerate(people)}
        plat_of = dict(people)
        level = {uid: 1 for uid, _ in people}
        yuanbao = {uid: 100 for uid, _ in people}
        seen_before: set[str] = set()

        def log(code: str, uid: str, plat: str, ts: int, **data: Any) -> None:
            area = area_of[uid]
            d = {"corpid": int(plat), "type": code.split("_")[0], "server_name": f"server-{game}",
                 "opno": OPNO[code], "opname": code, "acct": uid, **data}
            gamelog.append((ts, _line({"op": {"code": code, "id": OPNO[code]}, "area": area, "ts": ts, "data": d})))
            k = (game, area)
            s.first_seen[k] = min(s.first_seen.get(k, ts), ts)

        for d in range(days):
            day = add_days(first_day, d, tz)
            day_pay: dict[str, list[tuple[int, float]]] = defaultdict(list)
            for uid, plat in people:
                if rnd.random() > activity:
                    continue
                area = area_of[uid]
                t0 = day + rnd.randrange(0, 86400 - 7200)
                if uid not in seen_before:
                    seen_before.add(uid)
                    log("signup_logcount", uid, plat, t0)
                    member("signup_day", game, area, plat, day, uid)
                    if rnd.random() < 0.8:
                        log("createrole_logcount", uid, plat, t0 + 30)
                        member("createrole_day", game, area, plat, day, uid)
                for _ in range(rnd.randint(1, 3)):
                    t = t0 + rnd.randrange(0, 7200)
                    log("login_logcount", uid, plat, t)
                    member("login_hour", game, area, plat, hour_start(t, tz), uid)
                    member("login_day", game, area, plat, day, uid)
                t = t0 + 60
                # coin: maybe a recharge, a shop purchase (with its coin consumption), an upgrade
                if rnd.random() < 0.3:
                    amount = rnd.choice((6, 30, 98))
                    day_pay[uid].append((t, float(amount)))
                    yuanbao[uid] += amount * 10
                    log("coin_logchange", uid, plat, t, coin_type="yuanbao", change=amount * 10, reason="recharge",
                        rest=yuanbao[uid])
                    _coin(s, game, area, plat, day, gained=amount * 10)
                if rnd.random() < 0.5:
                    item = rnd.choice(sorted(_ITEMS))
                    name, price = _ITEMS[item]
                    count = rnd.randint(1, 3)
                    cost = min(price * count, yuanbao[uid])
                    if cost > 0:
                        yuanbao[uid] -= cost
                        log("shop_logbuy", uid, plat, t + 5, item_id=item, item_name=name, count=count, cost=cost)
                        log("coin_logchange", uid, plat, t + 5, coin_type="yuanbao", change=-cost, reason="shop",
                            rest=yuanbao[uid])
                        _coin(s, game, area, plat, day, consumed=cost)
                        member("coin_day", game, area, plat, day, uid)
                        k = (game, area, plat, day, item)
                        c = s.shop.get(k, (0, 0, 0))
                        s.shop[k] = (c[0] + count, c[1] + 1, c[2] + cost)
                if rnd.random() < 0.2:
                    log("coin_logchange", uid, plat, t + 9, coin_type="gold", change=-50, reason="repair", rest=0)
                if rnd.random() < 0.6:
                    fid = rnd.choice(sorted(_FUBEN))
                    log("fuben_logchange", uid, plat, t + 100, fuben_id=fid, fuben_name=_FUBEN[fid], action="enter")
                    if rnd.random() < 0.7:
                        log("fuben_logchange", uid, plat, t + 400, fuben_id=fid, fuben_name=_FUBEN[fid],
                            action="finish")
                tid = sorted(_TASKS)[min(level[uid] - 1, len(_TASKS) - 1)]
                log("trunk_task_accept", uid, plat, t + 500, task_id=tid, task_name=_TASKS[tid])
                if rnd.random() < 0.6:
                    log("trunk_task_finish", uid, plat, t + 900, task_id=tid, task_name=_TASKS[tid])
                    old = level[uid]
                    level[uid] += 1
                    log("level_logchange", uid, plat, t + 901, grade=level[uid], old_grade=old)
                    newer_grade((game, area, plat, uid), t + 901, level[uid])
                # the user database's view of the user, sometimes taken before the level change
                sync_ts = t + rnd.choice((300, 1200))
                grade = level[uid] if sync_ts > t + 901 else level[uid] - (1 if level[uid] > 1 else 0)
                rec = {"game": game, "area": area, "plat": plat, "ts": sync_ts, "uid": uid, "name": f"name-{uid}",
                       "grade": grade, "rest_yuanbao": yuanbao[uid], "birthday": first_day,
                       "acctid": f"{uid}@example.com", "score": level[uid] * 10, "login_time": t0}
                sync_lines.append((sync_ts, _line(rec)))
                newer_grade((game, area, plat, uid), sync_ts, grade)
            # payment snapshots of the day: cumulative per-user totals at three moments, per plat
            for area, plat in [(a, p) for a in area_ids for p in _PLATS]:
                totals: dict[str, tuple[int, float]] = {}
                for cut in (day + 28800, day + 57600, day + 86399):
                    snap = {}
                    for uid, orders in sorted(day_pay.items()):
                        if plat_of.get(uid) != plat or area_of[uid] != area:
                            continue
                        done = [a for ts, a in orders if ts <= cut]
                        if done:
                            snap[uid] = {"times": len(done), "amount": float(sum(done))}
                            totals[uid] = (len(done), float(sum(done)))
                    if snap:
                        payment_lines.append((cut, _line({"game": game, "area": area, "plat": plat, "ts": day,
                                                          "users": snap})))
                if totals:
                    s.payments[(game, area, plat, day)] = totals
        name = f"gamelog_{game}_{tag}.txt"
        s.files[name] = out / name
        s.lines[name] = _write(out / name, gamelog, rnd, duplicates, malformed)

    # a late payment re-report of an early snapshot, and a stale user record: both must change nothing
    payment_lines.sort()
    if payment_lines:
        payment_lines.append((payment_lines[-1][0] + 1, payment_lines[0][1]))
    sync_lines.sort()
    for (game, area, plat, uid), (_, grade) in grade_at.items():
        s.grades[(game, area, plat, uid)] = grade
    for name, lines, bad in (("payment", payment_lines, ['{"game": "dl", "users": 5}']),
                             ("syncuser", sync_lines, ['{"uid": 42']),):
        fname = f"{name}_{tag}.txt"
        s.files[fname] = out / fname
        s.lines[fname] = _write(out / fname, lines, rnd, 0.0, malformed, bad=bad, keep_order=name == "payment")
    return s


def _coin(s: Summary, game: str, area: str, plat: str, day: int, consumed: int = 0, gained: int = 0) -> None:
    k = (game, area, plat, day)
    c = s.coin_day.get(k, (0, 0))
    s.coin_day[k] = (c[0] + consumed, c[1] + gained)


def _write(path: Path, lines: list[tuple[int, str]], rnd: random.Random, duplicates: float, malformed: bool,
           bad: list[str] | None = None, keep_order: bool = False) -> int:
    """Roughly time-ordered lines with some neighbours swapped, duplicates and malformed lines mixed in."""
    rows = [text for _, text in sorted(lines, key=lambda x: x[0])] if not keep_order else [t for _, t in lines]
    if not keep_order:
        for i in range(0, len(rows) - 1, 7):     # out of order: swap some neighbours
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
    out: list[str] = []
    for text in rows:
        out.append(text)
        if duplicates and rnd.random() < duplicates:
            out.append(text)
    if malformed:
        for text in (bad or _MALFORMED):
            out.insert(rnd.randrange(len(out) + 1), text)
    path.write_text("".join(t + "\n" for t in out), encoding="utf-8")
    return len(out)
