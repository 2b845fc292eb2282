"""A brute-force model of every stored collection, computed from the raw log lines.

Independent of the pipeline on purpose: it imports nothing from bolts/, spouts/ or
analytics (no analytics.periods either). It reads the raw lines with the stdlib's
json, applies the validation of docs/spouts.md (rejected lines are dropped, an
unrouted op code is ignored), treats identical raw lines of one source as one
record, and computes each collection from the definitions in docs/collections.md
and docs/timers.md with plain dicts and sets; periods come from zoneinfo.

    expected = reference.expected(gamelogs={"dl": [path, ...]}, payments=[path], syncusers=[path],
                                  zones={"dl": "Asia/Shanghai"}, now=time.time())
    expected["loginday"][("dl", area, plat, ts)] == {"count": 12, "type": "login"}

Every collection is a dict: key tuple (in the collection's key order) -> the other fields.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

__all__ = ["expected", "RETENTION", "ROUTED", "normalize", "diff"]

#: The gamelog op codes the spout publishes (docs/spouts.md); others are ignored.
ROUTED = {"login_logcount", "signup_logcount", "createrole_logcount", "coin_logchange", "shop_logbuy",
          "fuben_logchange", "trunk_task_accept", "trunk_task_finish", "level_logchange"}
RETENTION = (1, 2, 3, 4, 5, 6, 7, 14, 30)
MIN_TS = 946684800
MAX_FUTURE = 86400
MAX_LINE = 65536


# -- periods (zoneinfo only) ---------------------------------------------------------------

@lru_cache(maxsize=None)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def _epoch(local: datetime, tz: str) -> int:
    return int(local.replace(tzinfo=_zone(tz)).timestamp())


@lru_cache(maxsize=1 << 16)
def hour_of(ts: int, tz: str) -> int:
    # every zone used here has whole-hour offsets: the local hour starts on a UTC hour
    local = datetime.fromtimestamp(ts, _zone(tz))
    return ts - local.minute * 60 - local.second


@lru_cache(maxsize=1 << 18)
def day_of(ts: int, tz: str) -> int:
    local = datetime.fromtimestamp(ts, _zone(tz))
    return _epoch(datetime(local.year, local.month, local.day), tz)


@lru_cache(maxsize=None)
def plus_days(day: int, n: int, tz: str) -> int:
    local = datetime.fromtimestamp(day, _zone(tz))
    d = datetime(local.year, local.month, local.day) + timedelta(days=n)
    return _epoch(d, tz)


@lru_cache(maxsize=None)
def week_of(day: int, tz: str) -> int:
    local = datetime.fromtimestamp(day, _zone(tz))
    d = datetime(local.year, local.month, local.day) - timedelta(days=local.weekday())
    return _epoch(d, tz)


@lru_cache(maxsize=None)
def month_of(day: int, tz: str) -> int:
    local = datetime.fromtimestamp(day, _zone(tz))
    return _epoch(datetime(local.year, local.month, 1), tz)


def _rate(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _money(xs: Iterable[float]) -> float:
    return round(math.fsum(xs), 6)


# -- validation (docs/spouts.md) -------------------------------------------------------------

class Bad(Exception):
    pass


def _obj(line: str) -> dict:
    if len(line.encode("utf-8")) > MAX_LINE:
        raise Bad("size")
    try:
        rec = json.loads(line)
    except ValueError:
        raise Bad("json") from None
    if not isinstance(rec, dict):
        raise Bad("type")
    return rec


def _need(obj: dict, key: str) -> Any:
    if key not in obj or obj[key] is None:
        raise Bad(f"missing {key}")
    return obj[key]


def _str(v: Any, ints: bool = False) -> str:
    if ints and type(v) is int:
        return str(v)
    if not isinstance(v, str) or not v.strip():
        raise Bad("type str")
    return v


def _int(v: Any, minimum: int | None = None) -> int:
    if type(v) is float and v.is_integer():
        v = int(v)
    if type(v) is not int or (minimum is not None and v < minimum):
        raise Bad("type int")
    return v


def _num(v: Any, minimum: float | None = None) -> float:
    if type(v) not in (int, float) or not math.isfinite(v) or (minimum is not None and v < minimum):
        raise Bad("type number")
    return float(v)


def _epoch_ts(v: Any, now: float) -> int:
    v = _int(v)
    if v > now + MAX_FUTURE or v < MIN_TS:
        raise Bad("time")
    return v


def _lines(paths: Iterable[Path]) -> list[str]:
    """The distinct non-blank lines of these files (identical lines are one record)."""
    seen: dict[str, None] = {}
    for p in paths:
        for raw in Path(p).read_bytes().split(b"\n"):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue                                   # rejected: encoding
            if text.strip():
                seen.setdefault(text, None)
    return list(seen)


def valid_gamelog(line: str, game: str, now: float) -> dict | None:
    """The spout's body of one gamelog line; None when rejected or ignored."""
    try:
        rec = _obj(line)
        op = _need(rec, "op")
        if not isinstance(op, dict):
            raise Bad("op")
        code = _str(_need(op, "code"))
        area = _str(_need(rec, "area"), ints=True)
        ts = _epoch_ts(_need(rec, "ts"), now)
        data = _need(rec, "data")
        if not isinstance(data, dict):
            raise Bad("data")
        plat = _str(_need(data, "corpid"), ints=True)
        uid = _str(_need(data, "acct"), ints=True)
    except Bad:
        return None
    if code not in ROUTED:
        return None
    return {"game": game, "area": area, "plat": plat, "uid": uid, "ts": ts, "code": code, "data": data}


def valid_payment(line: str, now: float) -> dict | None:
    try:
        rec = _obj(line)
        game = _str(_need(rec, "game"))
        area = _str(_need(rec, "area"), ints=True)
        plat = _str(_need(rec, "plat"), ints=True)
        ts = _epoch_ts(_need(rec, "ts"), now)
        users = _need(rec, "users")
        if not isinstance(users, dict):
            raise Bad("users")
        clean = {}
        for uid, u in users.items():
            if not uid.strip() or not isinstance(u, dict):
                raise Bad("user")
            clean[uid] = (_int(_need(u, "times"), 0), _num(_need(u, "amount"), 0))
    except Bad:
        return None
    return {"game": game, "area": area, "plat": plat, "ts": ts, "users": clean}


def valid_syncuser(line: str, now: float) -> dict | None:
    try:
        rec = _obj(line)
        ts = _epoch_ts(_need(rec, "ts"), now)
        name = _need(rec, "name")
        if not isinstance(name, str):
            raise Bad("name")
        score = _need(rec, "score")
        return {"game": _str(_need(rec, "game")), "area": _str(_need(rec, "area"), ints=True),
                "plat": _str(_need(rec, "plat"), ints=True), "ts": ts,
                "uid": _str(_need(rec, "uid"), ints=True), "name": name,
                "grade": _int(_need(rec, "grade"), 0), "rest_yuanbao": _int(_need(rec, "rest_yuanbao"), 0),
                "birthday": _int(_need(rec, "birthday"), 0), "acctid": _str(_need(rec, "acctid"), ints=True),
                "score": _int(score) if isinstance(score, int) else _num(score),
                "login_time": _int(_need(rec, "login_time"), 0)}
    except Bad:
        return None


def _field_str(d: Mapping, k: str) -> str | None:
    v = d.get(k)
    if type(v) is str and v:
        return v
    if type(v) is int:
        return str(v)
    return None


def _field_int(d: Mapping, k: str) -> int | None:
    v = d.get(k)
    if type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    return None


def _field_num(d: Mapping, k: str) -> float | int | None:
    v = d.get(k)
    return v if type(v) in (int, float) and v == v else None


# -- the model -----------------------------------------------------------------------------------

def expected(*, gamelogs: Mapping[str, list[Path]], payments: list[Path], syncusers: list[Path],
             zones: Mapping[str, str], now: float, default_tz: str = "Asia/Shanghai") -> dict[str, dict]:
    tz_of = lambda g: zones.get(g, default_tz)  # noqa: E731
    out: dict[str, dict] = defaultdict(dict)
    sets: dict[tuple, set[str]] = defaultdict(set)             # (set, game, area, plat, ts[, sub]) -> uids

    # ---- gamelog ----
    first = {"userfirst": {}, "rolefirst": {}}
    coin: dict[tuple, dict[str, int]] = {}
    shop: dict[tuple, dict[str, Any]] = {}
    copy: dict[tuple, dict[str, Any]] = {}
    tasks: dict[tuple, dict[str, Any]] = {}
    grades: dict[tuple, tuple[int, int]] = {}                   # user -> (ts, grade) newest
    start: dict[tuple, int] = {}
    names: dict[tuple, str] = {}      # server -> '<ts:012d>\t<name>' of its newest record that names it
    kinds = {"login_logcount": ("login", "userfirst"), "signup_logcount": ("signup", None),
             "createrole_logcount": ("createrole", "rolefirst")}
    for game, paths in gamelogs.items():
        tz = tz_of(game)
        for line in _lines(paths):
            b = valid_gamelog(line, game, now)
            if b is None:
                continue
            g, a, p, uid, ts, code, data = (b["game"], b["area"], b["plat"], b["uid"], b["ts"], b["code"],
                                            b["data"])
            server = (g, a, p)
            start[(g, a)] = min(start.get((g, a), ts), ts)
            # logins, sign-ups and role creations travel without their data (spouts/gamelog.py)
            if code not in kinds and isinstance(data, dict) and isinstance(data.get("server_name"), str) \
                    and data["server_name"]:
                names[(g, a)] = max(names.get((g, a), ""), f"{ts:012d}\t{data['server_name']}")
            day = day_of(ts, tz)
            if code in kinds:
                kind, firstcoll = kinds[code]
                sets[(f"{kind}_hour", *server, hour_of(ts, tz))].add(uid)
                sets[(f"{kind}_day", *server, day)].add(uid)
                if firstcoll:
                    k = (*server, uid)
                    first[firstcoll][k] = min(first[firstcoll].get(k, day), day)
            elif code == "coin_logchange":
                ctype, change, reason = _field_str(data, "coin_type"), _field_int(data, "change"), \
                    _field_str(data, "reason")
                if ctype is None or change is None or reason is None or ctype != "yuanbao" or change == 0:
                    continue
                for coll, key in (("coinhour", (*server, hour_of(ts, tz))), ("coinday", (*server, day)),
                                  ("cointype", (*server, day, reason))):
                    c = coin.setdefault((coll, key), {"consumed": 0, "gained": 0, "consume_times": 0, "times": 0})
                    c["times"] += 1
                    if change < 0:
                        c["consumed"] -= change
                        c["consume_times"] += 1
                        if coll != "cointype":
                            sets[(f"coin_{coll[4:]}", *key)].add(uid)
                    else:
                        c["gained"] += change
            elif code == "shop_logbuy":
                item, count, cost = _field_str(data, "item_id"), _field_int(data, "count"), _field_num(data, "cost")
                if item is None or count is None or cost is None or count <= 0 or cost < 0:
                    continue
                s = shop.setdefault((*server, day, item), {"count": 0, "buy_times": 0, "cost": 0, "names": set(),
                                                           "users": set()})
                s["count"] += count
                s["buy_times"] += 1
                s["cost"] += cost
                s["users"].add(uid)
                if isinstance(data.get("item_name"), str) and data["item_name"]:
                    s["names"].add(data["item_name"])
            elif code == "fuben_logchange":
                fid, action = _field_str(data, "fuben_id"), _field_str(data, "action")
                if fid is None or action not in ("enter", "finish"):
                    continue
                c = copy.setdefault((*server, day, fid), {"enters": 0, "finishes": 0, "names": set(), "users": set()})
                c["enters" if action == "enter" else "finishes"] += 1
                c["users"].add(uid)
                if isinstance(data.get("fuben_name"), str) and data["fuben_name"]:
                    c["names"].add(data["fuben_name"])
            elif code in ("trunk_task_accept", "trunk_task_finish"):
                tid = _field_str(data, "task_id")
                if tid is None:
                    continue
                t = tasks.setdefault((*server, day, tid), {"accepted": set(), "finished": set(), "names": set()})
                t["accepted" if code == "trunk_task_accept" else "finished"].add(uid)
                if isinstance(data.get("task_name"), str) and data["task_name"]:
                    t["names"].add(data["task_name"])
            elif code == "level_logchange":
                grade = _field_int(data, "grade")
                if grade is None:
                    continue
                k = (*server, uid)
                grades[k] = max(grades.get(k, (ts, grade)), (ts, grade))

    for kind in ("login", "signup", "createrole"):
        for period in ("hour", "day"):
            for (s, *key), uids in sets.items():
                if s == f"{kind}_{period}":
                    out[f"{kind}{period}"][tuple(key)] = {"count": len(uids), "type": kind}
    for coll in ("userfirst", "rolefirst"):
        out[coll] = {k: {"ts": d} for k, d in first[coll].items()}
    for (coll, key), c in coin.items():
        if coll == "cointype":
            out[coll][key] = {"consumed": c["consumed"], "gained": c["gained"], "times": c["times"]}
        else:
            out[coll][key] = {"consumed": c["consumed"], "gained": c["gained"], "consume_times": c["consume_times"],
                              "consume_users": len(sets.get((f"coin_{coll[4:]}", *key), ()))}
    for key, s in shop.items():
        doc = {"count": s["count"], "buy_times": s["buy_times"], "cost": s["cost"], "users": len(s["users"])}
        if s["names"]:
            assert len(s["names"]) == 1, f"several names for item {key}: 'latest seen' is order-dependent"
            doc["item_name"] = next(iter(s["names"]))
        out["shop"][key] = doc
    for key, c in copy.items():
        doc = {"enters": c["enters"], "finishes": c["finishes"], "users": len(c["users"])}
        if c["names"]:
            assert len(c["names"]) == 1, f"several names for dungeon {key}"
            doc["fuben_name"] = next(iter(c["names"]))
        out["gamecopy"][key] = doc
    for key, t in tasks.items():
        doc = {"accepted": len(t["accepted"]), "finished": len(t["finished"])}
        if t["names"]:
            assert len(t["names"]) == 1, f"several names for task {key}"
            doc["task_name"] = next(iter(t["names"]))
        out["mainline"][key] = doc
    out["serverstarttime"] = {k: {"ts": ts, "server_name_at": names.get(k, "")} for k, ts in start.items()}

    # ---- payment: per (server, day, uid) the largest times and the largest amount ----
    detail: dict[tuple, list] = {}
    for line in _lines(payments):
        r = valid_payment(line, now)
        if r is None:
            continue
        day = day_of(r["ts"], tz_of(r["game"]))
        for uid, (times, amount) in r["users"].items():
            k = (r["game"], r["area"], r["plat"], day, uid)
            cur = detail.setdefault(k, [times, amount])
            cur[0], cur[1] = max(cur[0], times), max(cur[1], amount)
    per_day: dict[tuple, dict[str, list]] = defaultdict(dict)
    per_user: dict[tuple, dict[int, list]] = defaultdict(dict)
    for (g, a, p, day, uid), (times, amount) in detail.items():
        out["payorderdetail"][(g, a, p, day, uid)] = {"times": times, "amount": amount}
        per_day[(g, a, p, day)][uid] = [times, amount]
        per_user[(g, a, p, uid)][day] = [times, amount]
        sets[("pay_day", g, a, p, day)].add(uid)
    for key, users in per_day.items():
        out["payorderuser"][key] = {"count": len(users), "pay_count": sum(t for t, _ in users.values()),
                                    "pay_amount": _money(x for _, x in users.values()), "type": "payorderuser"}
    for key, days in per_user.items():
        out["userpay"][key] = {"ts": min(days), "last_pay_day": max(days),
                               "times": sum(t for t, _ in days.values()),
                               "amount": _money(x for _, x in days.values()), "rest_yuanbao": 0}

    # ---- syncuser + level changes: newest wins (ties broken by content) ----
    profiles: dict[tuple, tuple] = {}
    fields = ("name", "rest_yuanbao", "birthday", "acctid", "score", "login_time")
    for line in _lines(syncusers):
        r = valid_syncuser(line, now)
        if r is None:
            continue
        k = (r["game"], r["area"], r["plat"], r["uid"])
        prof = {f: r[f] for f in fields}
        rank = (r["ts"], json.dumps(prof, sort_keys=True, default=str))
        if k not in profiles or rank > profiles[k][0]:
            profiles[k] = (rank, prof)
        grades[k] = max(grades.get(k, (r["ts"], r["grade"])), (r["ts"], r["grade"]))
    for k in set(profiles) | set(grades):
        doc: dict[str, Any] = {}
        if k in profiles:
            (ts, _), prof = profiles[k]
            doc.update(prof, ts=ts)
            out["userpay"].setdefault(k, {"ts": 0, "last_pay_day": 0, "times": 0, "amount": 0})["rest_yuanbao"] = \
                prof["rest_yuanbao"]
        else:  # known from level changes only: no profile yet
            doc.update({f: "" if f in ("name", "acctid") else 0 for f in fields}, ts=0)
        if k in grades:
            doc["grade_ts"], doc["grade"] = grades[k]
        out["usercenter"][k] = doc
    levels: dict[tuple, int] = defaultdict(int)
    for (g, a, p, _), (_, grade) in grades.items():
        levels[(g, a, p, grade)] += 1
    out["userlevel"] = {k: {"count": n} for k, n in levels.items()}

    # ---- server: the day bolts' final figures, 0 where a day has none ----
    zero = {"active": 0, "reg": 0, "create_role": 0, "pay_user": 0, "pay_count": 0, "pay_amount": 0}
    for (g, a, p, day), doc in list(out["loginday"].items()):
        out["server"].setdefault((g, a, p, day), dict(zero))["active"] = doc["count"]
    for (g, a, p, day), doc in list(out["signupday"].items()):
        out["server"].setdefault((g, a, p, day), dict(zero))["reg"] = doc["count"]
    for (g, a, p, day), doc in list(out["createroleday"].items()):
        out["server"].setdefault((g, a, p, day), dict(zero))["create_role"] = doc["count"]
    for key, doc in out["payorderuser"].items():
        out["server"].setdefault(key, dict(zero)).update(pay_user=doc["count"], pay_count=doc["pay_count"],
                                                  pay_amount=doc["pay_amount"])

    # ---- timers ----
    login_days: dict[tuple, dict[int, set[str]]] = defaultdict(dict)   # server -> day -> uids
    for (s, g, a, p, day), uids in sets.items():
        if s == "login_day":
            login_days[(g, a, p)][day] = uids
    firsts: dict[tuple, dict[int, int]] = defaultdict(lambda: defaultdict(int))  # server -> first day -> users
    for (g, a, p, _), day in first["userfirst"].items():
        firsts[(g, a, p)][day] += 1
    for server in set(login_days) | set(firsts):
        tz = tz_of(server[0])
        for period, start_of in (("day", lambda d, tz: d), ("week", week_of), ("month", month_of)):
            users: dict[int, set[str]] = defaultdict(set)
            new: dict[int, int] = defaultdict(int)
            for day, uids in login_days.get(server, {}).items():
                users[start_of(day, tz)] |= uids
            for day, n in firsts.get(server, {}).items():
                new[start_of(day, tz)] += n
            for ps in set(users) | set(new):
                ac, nw = len(users[ps]), new[ps]
                if ac == 0 and nw == 0:
                    continue
                out[f"active{period}"][(*server, ps)] = {
                    "ac_user": ac, "new_ac_user": nw, "new_ac_rate": _rate(nw, ac),
                    "old_ac_user": ac - nw, "old_ac_rate": _rate(ac - nw, ac)}
    cohorts: dict[tuple, set[str]] = defaultdict(set)
    for (g, a, p, uid), day in first["rolefirst"].items():
        cohorts[(g, a, p, day)].add(uid)
    for (g, a, p, day), cohort in cohorts.items():
        tz = tz_of(g)
        doc = {"cohort": len(cohort)}
        for k in RETENTION:
            kept = len(cohort & login_days.get((g, a, p), {}).get(plus_days(day, k, tz), set()))
            doc[f"d{k}"], doc[f"d{k}_rate"] = kept, _rate(kept, len(cohort))
        out["loginretention"][(g, a, p, day)] = doc
    first_pay = {k: v["ts"] for k, v in out["userpay"].items() if v["ts"]}
    for (g, a, p, day), users in per_day.items():
        tz = tz_of(g)
        payers = set(users)
        newp = {u for u in payers if first_pay.get((g, a, p, u)) == day}
        doc = {"pay_user": len(payers), "new_pay_user": len(newp), "old_pay_user": len(payers) - len(newp)}
        for k in RETENTION:
            kept = len(newp & set(per_day.get((g, a, p, plus_days(day, k, tz)), {})))
            doc[f"d{k}"], doc[f"d{k}_rate"] = kept, _rate(kept, len(newp))
        out["paytraceday"][(g, a, p, day)] = doc
    # cohortltv: what each role cohort paid on D..D+k; funnelday: sign-up -> role -> D+1 login -> paid by D+30
    paid: dict[tuple, list[tuple[int, str, float]]] = defaultdict(list)     # server -> [(day, uid, amount)]
    for (g, a, p, day, uid), (_, amount) in detail.items():
        paid[(g, a, p)].append((day, uid, amount))
    for (g, a, p, day), cohort in cohorts.items():
        tz = tz_of(g)
        doc = {"cohort": len(cohort)}
        for k in (1, 7, 14, 30):
            end = plus_days(day, k + 1, tz)
            rows = [(uid, x) for d, uid, x in paid.get((g, a, p), []) if day <= d < end and uid in cohort]
            amount = _money(x for _, x in rows)
            doc[f"amount_d{k}"], doc[f"payers_d{k}"] = amount, len({uid for uid, _ in rows})
            doc[f"ltv_d{k}"] = round(amount / len(cohort), 2)
        out["cohortltv"][(g, a, p, day)] = doc
    for (s, g, a, p, day), signed in list(sets.items()):
        if s != "signup_day" or not signed:
            continue
        tz = tz_of(g)
        role = signed & sets.get(("createrole_day", g, a, p, day), set())
        back = role & sets.get(("login_day", g, a, p, plus_days(day, 1, tz)), set())
        end = plus_days(day, 31, tz)
        payers = back & {uid for d, uid, _ in paid.get((g, a, p), []) if day <= d < end}
        out["funnelday"][(g, a, p, day)] = {
            "signup": len(signed), "role": len(role), "next_day_login": len(back), "first_payment": len(payers),
            "role_rate": _rate(len(role), len(signed)), "next_day_login_rate": _rate(len(back), len(role)),
            "first_payment_rate": _rate(len(payers), len(back)), "overall_rate": _rate(len(payers), len(signed))}
    return dict(out)


# -- comparison --------------------------------------------------------------------------------

def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def normalize(docs: Iterable[Mapping[str, Any]], key: tuple[str, ...]) -> dict[tuple, dict[str, Any]]:
    """Stored documents as key tuple -> other fields (floats rounded to 6 decimals)."""
    out: dict[tuple, dict[str, Any]] = {}
    for d in docs:
        k = tuple(d[f] for f in key)
        assert k not in out, f"two documents with key {k}"
        out[k] = {f: _round(v) for f, v in d.items() if f not in key}
    return out


def diff(name: str, got: Mapping[tuple, dict], want: Mapping[tuple, dict], limit: int = 5) -> list[str]:
    """Readable differences (first `limit` keys of each kind); empty if equal."""
    want = {k: {f: _round(v) for f, v in d.items()} for k, d in want.items()}
    lines: list[str] = []
    missing = sorted(set(want) - set(got), key=repr)
    extra = sorted(set(got) - set(want), key=repr)
    changed = sorted((k for k in set(got) & set(want) if got[k] != want[k]), key=repr)
    if not (missing or extra or changed):
        return []
    lines.append(f"{name}: {len(got)} stored, {len(want)} expected; {len(missing)} missing, {len(extra)} unexpected, "
                 f"{len(changed)} different")
    for k in missing[:limit]:
        lines.append(f"  missing  {k}: {want[k]}")
    for k in extra[:limit]:
        lines.append(f"  extra    {k}: {got[k]}")
    for k in changed[:limit]:
        fields = sorted(set(got[k]) | set(want[k]))
        lines.append(f"  differs  {k}: " + ", ".join(f"{f}: got {got[k].get(f, '<absent>')!r} want "
                                                       f"{want[k].get(f, '<absent>')!r}"
                                                       for f in fields if got[k].get(f) != want[k].get(f)
                                                       or (f in got[k]) != (f in want[k])))
    return lines
