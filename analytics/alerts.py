"""Alert rules on sliding windows, sent to a Slack-compatible webhook and to the log.

Configuration (docs/http.md):

    [alerts]
    webhook = "https://hooks.example/T000/B000"   # optional: POST {"text": ...}
    interval = 60          # seconds between evaluations
    quiet = 3600           # the same rule+key is not re-sent within this many seconds

    [[alerts.rules]]
    name = "logins dropped"
    metric = "loginhour.count"          # <collection>.<field>, summed per game/area over the window
    window = 3600                       # the window is [now - window, now)
    compare = "below_ratio_of_last_week"
    ratio = 0.5                         # fire when value < ratio * the same window a week earlier

    [[alerts.rules]]
    name = "payments rejected"
    metric = "payment.rejected"         # <component>.<counter>: growth of a component counter in the window
    window = 300
    compare = "above"
    threshold = 10

Pure parts (Rule, evaluate, AlertState) take values and times as arguments;
AlertMonitor does the I/O: reads the store (and counters, when given a source),
posts to the webhook, logs.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import gevent
import requests

from analytics.config import ConfigError, Settings
from analytics.query import collections, query
from analytics.store.base import Store

__all__ = ["Rule", "Finding", "Notice", "evaluate", "AlertState", "CounterWindow", "AlertMonitor",
           "parse_rules", "WEEK"]

log = logging.getLogger(__name__)

WEEK = 7 * 86400
COMPARES = ("above", "below_ratio_of_last_week")
Key = tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    window: int
    compare: str
    threshold: float = 0.0
    ratio: float = 0.5

    @property
    def source(self) -> str:
        return self.metric.split(".", 1)[0]

    @property
    def field(self) -> str:
        return self.metric.split(".", 1)[1]

    @property
    def is_counter(self) -> bool:
        """A component counter (payment.rejected) rather than a stored collection field."""
        return self.source not in collections()


def parse_rules(table: Mapping[str, Any]) -> list[Rule]:
    """Rules from the [alerts] table, with errors that name the bad rule."""
    rules = []
    for i, r in enumerate(table.get("rules", []) or []):
        where = f"[[alerts.rules]] #{i + 1} ({r.get('name', '?') if isinstance(r, Mapping) else r!r})"
        if not isinstance(r, Mapping):
            raise ConfigError(f"{where}: must be a table")
        unknown = set(r) - {"name", "metric", "window", "compare", "threshold", "ratio"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        metric = str(r.get("metric", ""))
        if metric.count(".") != 1 or not all(metric.split(".")):
            raise ConfigError(f"{where}: metric must be <collection>.<field> or <component>.<counter>, "
                              f"not {metric!r}")
        compare = r.get("compare", "above")
        if compare not in COMPARES:
            raise ConfigError(f"{where}: compare must be one of {', '.join(COMPARES)}, not {compare!r}")
        window = r.get("window")
        if not isinstance(window, int) or window <= 0:
            raise ConfigError(f"{where}: window must be a positive number of seconds, not {window!r}")
        rule = Rule(str(r.get("name") or metric), metric, window, compare,
                    float(r.get("threshold", 0)), float(r.get("ratio", 0.5)))
        if not rule.is_counter and rule.field not in collections()[rule.source].fields:
            raise ConfigError(f"{where}: {rule.source} has no field {rule.field!r}")
        rules.append(rule)
    return rules


@dataclass(frozen=True)
class Finding:
    """The outcome of one rule for one key (e.g. (game, area)) at one evaluation."""
    rule: str
    key: Key
    firing: bool
    value: float
    reference: float
    text: str


def evaluate(rule: Rule, current: Mapping[Key, float], last_week: Mapping[Key, float] | None = None
             ) -> list[Finding]:
    """Compare the window's values (per key) with the rule; pure."""
    out = []
    if rule.compare == "above":
        for key, value in sorted(current.items()):
            firing = value > rule.threshold
            out.append(Finding(rule.name, key, firing, value, rule.threshold,
                               f"{rule.metric} = {value:g} over the last {rule.window}s "
                               f"{'>' if firing else '<='} {rule.threshold:g}"))
    else:
        prev = last_week or {}
        for key in sorted(set(current) | set(prev)):
            value, before = current.get(key, 0.0), prev.get(key, 0.0)
            limit = rule.ratio * before
            firing = before > 0 and value < limit
            out.append(Finding(rule.name, key, firing, value, before,
                               f"{rule.metric} = {value:g} over the last {rule.window}s, "
                               f"{'below' if firing else 'not below'} {rule.ratio:g} x last week's {before:g}"))
    return out


@dataclass(frozen=True)
class Notice:
    """One message to send: 'firing' (new or repeated after the quiet period) or 'resolved'."""
    kind: str
    finding: Finding

    @property
    def text(self) -> str:
        where = "/".join(self.finding.key) or "all"
        mark = ":rotating_light: ALERT" if self.kind == "firing" else ":white_check_mark: resolved"
        return f"{mark} {self.finding.rule} [{where}]: {self.finding.text}"


@dataclass
class AlertState:
    """De-duplication: a rule+key that fires is sent once per `quiet` seconds; 'resolved' when it clears."""
    quiet: float = 3600.0
    _sent: dict[tuple[str, Key], float] = field(default_factory=dict)

    def update(self, findings: Iterable[Finding], now: float) -> list[Notice]:
        notices = []
        for f in findings:
            k = (f.rule, f.key)
            last = self._sent.get(k)
            if f.firing:
                if last is None or now - last >= self.quiet:
                    self._sent[k] = now
                    notices.append(Notice("firing", f))
            elif last is not None:
                del self._sent[k]
                notices.append(Notice("resolved", f))
        return notices

    @property
    def firing(self) -> set[tuple[str, Key]]:
        return set(self._sent)


class CounterWindow:
    """Growth of cumulative counters over a sliding window, from timestamped samples (pure)."""

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._samples: dict[str, deque[tuple[float, float]]] = {}

    def add(self, name: str, value: float, now: float) -> None:
        q = self._samples.setdefault(name, deque())
        q.append((now, value))
        while len(q) > 1 and q[1][0] <= now - self.horizon:
            q.popleft()

    def growth(self, name: str, window: float, now: float) -> float:
        """value now - the latest sample at or before now - window (or the oldest one); 0 if unknown."""
        q = self._samples.get(name)
        if not q:
            return 0.0
        base = q[0][1]
        for t, v in q:
            if t <= now - window:
                base = v
        return max(0.0, q[-1][1] - base)


def store_metric(store: Store, rule: Rule, ts_from: int, ts_to: int) -> dict[Key, float]:
    """Sum of rule.field per (game, area) over documents with ts_from <= ts < ts_to."""
    out: dict[Key, float] = {}
    for d in query(store, rule.source, ts_from=ts_from, ts_to=ts_to):
        v = d.get(rule.field)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            key = (str(d.get("game", "")), str(d.get("area", "")))
            out[key] = out.get(key, 0.0) + float(v)
    return out


class AlertMonitor:
    """Evaluates the rules every `interval` seconds in a greenlet; sends notices to the webhook and the log."""

    def __init__(self, rules: list[Rule], store: Store, *, webhook: str | None = None, interval: float = 60.0,
                 quiet: float = 3600.0, counters: Callable[[], Mapping[str, float]] | None = None,
                 clock: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        self.rules, self.store, self.webhook = rules, store, webhook
        self.interval, self.clock, self.timeout = interval, clock, timeout
        self.counters = counters
        self.state = AlertState(quiet)
        self.window = CounterWindow(max([r.window for r in rules] or [0]) + interval * 2)
        self.sent: list[Notice] = []
        self._greenlet: gevent.Greenlet | None = None
        self._warned: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings, store: Store, **kw: Any) -> "AlertMonitor":
        table = settings.extra.get("alerts", {})
        return cls(parse_rules(table), store, webhook=table.get("webhook"),
                   interval=float(table.get("interval", 60)), quiet=float(table.get("quiet", 3600)), **kw)

    def check(self) -> list[Notice]:
        """One evaluation of every rule: returns (and sends) the notices."""
        now = self.clock()
        counters = dict(self.counters()) if self.counters else {}
        for name, value in counters.items():
            self.window.add(name, float(value), now)
        notices: list[Notice] = []
        for rule in self.rules:
            if rule.is_counter:
                if rule.metric not in counters:
                    if rule.metric not in self._warned:
                        self._warned.add(rule.metric)
                        log.warning("alert %r: no counter %s here (counters come from the components "
                                    "running in this process)", rule.name, rule.metric)
                    continue
                findings = evaluate(rule, {(): self.window.growth(rule.metric, rule.window, now)})
            else:
                end = int(now)
                current = store_metric(self.store, rule, end - rule.window, end)
                last = store_metric(self.store, rule, end - rule.window - WEEK, end - WEEK) \
                    if rule.compare == "below_ratio_of_last_week" else None
                for r, key in self.state.firing:  # a key gone from both windows is evaluated (and resolves)
                    if r == rule.name:
                        current.setdefault(key, 0.0)
                findings = evaluate(rule, current, last)
            notices += self.state.update(findings, now)
        for n in notices:
            self.send(n)
        return notices

    def send(self, notice: Notice) -> None:
        (log.warning if notice.kind == "firing" else log.info)("%s", notice.text)
        self.sent.append(notice)
        if not self.webhook:
            return
        try:
            r = requests.post(self.webhook, json={"text": notice.text}, timeout=self.timeout)
            if r.status_code >= 300:
                log.error("alert webhook answered %s: %s", r.status_code, r.text[:200])
        except requests.RequestException as exc:
            log.error("alert webhook %s unreachable: %s", self.webhook, exc)

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # a bad rule or a store outage must not end the monitor
                log.exception("alert evaluation failed")
            gevent.sleep(self.interval)

    def start(self) -> "AlertMonitor":
        self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(timeout=5)
            self._greenlet = None
