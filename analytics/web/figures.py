"""The studio's tables from stored documents: cohort retention, monetization, lifetime value, funnel, today.

Pure: documents in (as the query layer returns them), rows out. Several servers
are combined by summing their counts and amounts per day and dividing the sums,
never by averaging their rates (a small server would weigh as much as a big one).
Summing over servers counts a user once per server, as every per-server figure
does. A figure whose day has not started yet (a cohort's D+7 next week) is None.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from analytics.periods import add_days, zone
from analytics.measures import LTV_OFFSETS, RETENTION_OFFSETS, money_ratio, money_sum, rate

__all__ = ["RETENTION_OFFSETS", "LTV_OFFSETS", "day_label", "sum_days", "cohort_table", "monetization_days",
           "ltv_table", "funnel_table", "today_figures", "FUNNEL_STEPS"]

Doc = Mapping[str, Any]
#: The funnel's steps in order, and the field of each step's rate (of the step before).
FUNNEL_STEPS: tuple[tuple[str, str | None], ...] = (("signup", None), ("role", "role_rate"),
                                                    ("next_day_login", "next_day_login_rate"),
                                                    ("first_payment", "first_payment_rate"))


def day_label(ts: int, tz: str) -> str:
    """'YYYY-MM-DD' of the local day starting at ts."""
    return datetime.fromtimestamp(ts, zone(tz)).strftime("%Y-%m-%d")


def sum_days(docs: Iterable[Doc], fields: Sequence[str]) -> dict[int, dict[str, float]]:
    """Per ts, the sum of each field over the documents (a missing field counts 0)."""
    out: dict[int, dict[str, list[float]]] = {}
    for d in docs:
        acc = out.setdefault(int(d["ts"]), {f: [] for f in fields})
        for f in fields:
            v = d.get(f)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                acc[f].append(v)
    return {ts: {f: _sum(vs) for f, vs in acc.items()} for ts, acc in sorted(out.items())}


def _sum(values: list[float]) -> float:
    """Integers stay integers; amounts are summed without float noise."""
    if all(type(v) is int for v in values):
        return sum(values)
    return money_sum(values)


def _due(day: int, k: int, tz: str, today: int) -> bool:
    """Whether day D+k has started by `today` (the local day start of now)."""
    return add_days(day, k, tz) <= today


def cohort_table(docs: Iterable[Doc], tz: str, today: int) -> dict[str, Any]:
    """Rows of the retention heatmap from loginretention documents, and the range's weighted total."""
    counts = ["cohort", *(f"d{k}" for k in RETENTION_OFFSETS)]
    rows, tot = [], {f: 0 for f in counts}
    due_cohort = {k: 0 for k in RETENTION_OFFSETS}
    for ts, s in sum_days(docs, counts).items():
        row: dict[str, Any] = {"day": day_label(ts, tz), "ts": ts, "cohort": s["cohort"]}
        tot["cohort"] += s["cohort"]
        for k in RETENTION_OFFSETS:
            if _due(ts, k, tz, today):
                row[f"d{k}"], row[f"d{k}_rate"] = s[f"d{k}"], rate(s[f"d{k}"], s["cohort"])
                tot[f"d{k}"] += s[f"d{k}"]
                due_cohort[k] += s["cohort"]
            else:
                row[f"d{k}"] = row[f"d{k}_rate"] = None
        rows.append(row)
    total: dict[str, Any] = {"cohort": tot["cohort"]}
    for k in RETENTION_OFFSETS:
        total[f"d{k}"] = tot[f"d{k}"] if due_cohort[k] else None
        total[f"d{k}_cohort"] = due_cohort[k]
        total[f"d{k}_rate"] = rate(tot[f"d{k}"], due_cohort[k]) if due_cohort[k] else None
    return {"offsets": list(RETENTION_OFFSETS), "rows": rows, "total": total}


def monetization_days(logins: Iterable[Doc], pays: Iterable[Doc], traces: Iterable[Doc], tz: str) -> list[dict]:
    """Per day: active users (loginday), payers and takings (payorderuser), first-time payers (paytraceday),
    ARPU = takings / active, ARPPU = takings / payers, paying rate = 100 * payers / active."""
    active = sum_days(logins, ["count"])
    paid = sum_days(pays, ["count", "pay_amount", "pay_count"])
    first = sum_days(traces, ["new_pay_user"])
    rows = []
    for ts in sorted(set(active) | set(paid) | set(first)):
        a = active.get(ts, {}).get("count", 0)
        p = paid.get(ts, {})
        payers, takings = p.get("count", 0), p.get("pay_amount", 0)
        rows.append({"day": day_label(ts, tz), "ts": ts, "active": a, "payers": payers, "takings": takings,
                     "pay_count": p.get("pay_count", 0), "first_time_payers": first.get(ts, {}).get("new_pay_user", 0),
                     "arpu": money_ratio(takings, a), "arppu": money_ratio(takings, payers),
                     "paying_rate": rate(payers, a)})
    return rows


def ltv_table(docs: Iterable[Doc], tz: str, today: int) -> list[dict]:
    """Per cohort day: cohort size, and at D1/D7/D14/D30 the cohort's takings, payers and LTV (cohortltv)."""
    fields = ["cohort", *(f"{f}_d{k}" for k in LTV_OFFSETS for f in ("amount", "payers"))]
    rows = []
    for ts, s in sum_days(docs, fields).items():
        row: dict[str, Any] = {"day": day_label(ts, tz), "ts": ts, "cohort": s["cohort"]}
        for k in LTV_OFFSETS:
            due = _due(ts, k, tz, today)
            row[f"amount_d{k}"] = s[f"amount_d{k}"] if due else None
            row[f"payers_d{k}"] = s[f"payers_d{k}"] if due else None
            row[f"ltv_d{k}"] = money_ratio(s[f"amount_d{k}"], s["cohort"]) if due else None
        rows.append(row)
    return rows


def _funnel_rates(counts: Mapping[str, float]) -> dict[str, float]:
    out, before = {}, None
    for step, rate_field in FUNNEL_STEPS:
        if rate_field is not None:
            out[rate_field] = rate(counts[step], counts[before])
        before = step
    out["overall_rate"] = rate(counts["first_payment"], counts["signup"])
    return out


def funnel_table(docs: Iterable[Doc], tz: str, today: int) -> dict[str, Any]:
    """Per sign-up day the funnel's counts and step rates (funnelday), and the range's total.

    A day whose next day has not started has no next-day login yet: its last two
    steps are None and it is left out of the total.
    """
    steps = [s for s, _ in FUNNEL_STEPS]
    rows, tot = [], {s: 0 for s in steps}
    for ts, s in sum_days(docs, steps).items():
        row: dict[str, Any] = {"day": day_label(ts, tz), "ts": ts, **{k: s[k] for k in steps}, **_funnel_rates(s)}
        if _due(ts, 1, tz, today):
            for k in steps:
                tot[k] += s[k]
        else:
            for k in ("next_day_login", "first_payment", "next_day_login_rate", "first_payment_rate",
                      "overall_rate"):
                row[k] = None
        rows.append(row)
    return {"steps": steps, "rows": rows, "total": {**tot, **_funnel_rates(tot)}}


def today_figures(logins: Iterable[Doc], signups: Iterable[Doc], roles: Iterable[Doc], pays: Iterable[Doc],
                  ) -> dict[str, Any]:
    """Today's headline figures from that day's documents (any number of servers)."""
    def total(docs: Iterable[Doc], field: str) -> float:
        return _sum([d[field] for d in docs if isinstance(d.get(field), (int, float))])
    pays = list(pays)
    active, payers, takings = total(logins, "count"), total(pays, "count"), total(pays, "pay_amount")
    return {"active": active, "signup": total(signups, "count"), "role": total(roles, "count"),
            "payers": payers, "takings": takings, "arpu": money_ratio(takings, active),
            "arppu": money_ratio(takings, payers), "paying_rate": rate(payers, active)}
