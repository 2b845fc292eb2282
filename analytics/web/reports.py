"""The studio's reports over the stats API: cohort retention, monetization, funnel, today's figures.

    GET /api/v1/cohorts?game=&area=&plat=&from=&to=        retention heatmap (loginretention)
    GET /api/v1/monetization?game=&area=&plat=&from=&to=   ARPU, ARPPU, paying rate, first-time payers; LTV
    GET /api/v1/funnel?game=&area=&plat=&from=&to=         sign-up -> role -> next-day login -> payment
    GET /api/v1/today?game=&area=&plat=                    today's figures (what /api/v1/live pushes)

`game` is required (days are the game's local days); `area` and `plat` take one
value or a comma-separated selection (`area=a1,a2`); without them every server
of the game is summed. Parameters are validated as for /api/v1/stats (known
names only, once each, no `$`), and every read goes through analytics.query.
The figures are stored ones (timer bolts keep the per-user joins): a request
reads documents, never raw records or membership sets.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import falcon

from analytics.config import Settings
from analytics.periods import add_days, day_start
from analytics.query import QueryError, query
from analytics.store.base import Store
from analytics.web.api import bad_request, request_params, time_param
from analytics.web.figures import cohort_table, day_label, funnel_table, ltv_table, monetization_days, today_figures

__all__ = ["Selection", "CohortsResource", "MonetizationResource", "FunnelResource", "TodayResource",
           "selection_of", "today_snapshot"]

_REPORT_PARAMS = {"game", "area", "plat", "from", "to"}
_TODAY_PARAMS = {"game", "area", "plat"}


class Selection:
    """One game and a selection of its servers (areas x plats; None: all), with the game's zone."""

    def __init__(self, game: str, areas: list[str | None], plats: list[str | None], tz: str,
                 ts_from: int | None = None, ts_to: int | None = None) -> None:
        self.game, self.areas, self.plats, self.tz = game, areas, plats, tz
        self.ts_from, self.ts_to = ts_from, ts_to

    def docs(self, store: Store, collection: str, ts_from: int | None = None,
             ts_to: int | None = None) -> list[dict[str, Any]]:
        """Documents of `collection` for every selected server, in [ts_from, ts_to) (default: the selection's)."""
        lo = self.ts_from if ts_from is None else ts_from
        hi = self.ts_to if ts_to is None else ts_to
        out: list[dict[str, Any]] = []
        try:
            for area in self.areas:
                for plat in self.plats:
                    out += query(store, collection, game=self.game, area=area, plat=plat, ts_from=lo, ts_to=hi)
        except QueryError as exc:
            raise bad_request(str(exc)) from None
        return out

    def describe(self) -> dict[str, Any]:
        return {"game": self.game, "tz": self.tz, "areas": [a for a in self.areas if a],
                "plats": [p for p in self.plats if p]}


def _listed(name: str, value: str | None) -> list[str | None]:
    if not value:
        return [None]
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise bad_request(f"{name} must be one value or a comma-separated list without empty items, not {value!r}")
    return list(dict.fromkeys(items))


def selection_of(req: falcon.Request, settings: Settings, allowed: set[str]) -> Selection:
    """The validated selection of a report request; a 400 names what is wrong."""
    p = request_params(req, allowed)
    game = p.get("game", "")
    if not game:
        raise bad_request("missing parameter 'game' (the game's days are its own time zone's)")
    tz = settings.tz_of(game)
    lo, hi = time_param("from", p.get("from"), tz), time_param("to", p.get("to"), tz)
    return Selection(game, _listed("area", p.get("area")), _listed("plat", p.get("plat")), tz, lo, hi)


class _Report:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.store, self.settings, self.clock = store, settings, clock

    def today(self, sel: Selection) -> int:
        """The last day whose figures are known: today, or the last day with logins when the data ends
        before (a replayed history): a cohort's D+k after it is None (not yet), not 0."""
        today = day_start(int(self.clock()), sel.tz)
        # logins up to 31 days (the longest offset) after the range tell whether its D+k days have data
        end = add_days(sel.ts_to if sel.ts_to is not None else today, 31, sel.tz)
        seen = [d["ts"] for d in sel.docs(self.store, "loginday", sel.ts_from, min(end, add_days(today, 1, sel.tz)))]
        return min(today, max(seen)) if seen else today


class CohortsResource(_Report):
    """The retention heatmap: per cohort day (first role creation) the retained counts and rates, summed."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sel = selection_of(req, self.settings, _REPORT_PARAMS)
        table = cohort_table(sel.docs(self.store, "loginretention"), sel.tz, self.today(sel))
        resp.media = {**sel.describe(), **table}


class MonetizationResource(_Report):
    """Per day ARPU, ARPPU, paying rate, first-time payers; per cohort day the cumulative LTV."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sel = selection_of(req, self.settings, _REPORT_PARAMS)
        days = monetization_days(sel.docs(self.store, "loginday"), sel.docs(self.store, "payorderuser"),
                                 sel.docs(self.store, "paytraceday"), sel.tz)
        ltv = ltv_table(sel.docs(self.store, "cohortltv"), sel.tz, self.today(sel))
        resp.media = {**sel.describe(), "days": days, "ltv": ltv}


class FunnelResource(_Report):
    """Per sign-up day: sign-up -> role creation -> next-day login -> payment, counts and step rates."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sel = selection_of(req, self.settings, _REPORT_PARAMS)
        resp.media = {**sel.describe(), **funnel_table(sel.docs(self.store, "funnelday"), sel.tz, self.today(sel))}


def today_snapshot(store: Store, sel: Selection, now: float) -> dict[str, Any]:
    """Today's figures of a selection: the day documents of the local day containing `now`."""
    start = day_start(int(now), sel.tz)
    end = add_days(start, 1, sel.tz)
    figures = today_figures(*(sel.docs(store, c, start, end)
                              for c in ("loginday", "signupday", "createroleday", "payorderuser")))
    return {**sel.describe(), "day": day_label(start, sel.tz), "ts": start, **figures, "at": round(now, 3)}


class TodayResource(_Report):
    """Today's figures as JSON: the live view's polling fallback."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sel = selection_of(req, self.settings, _TODAY_PARAMS)
        resp.media = today_snapshot(self.store, sel, self.clock())
        resp.set_header("Cache-Control", "no-cache")

