"""Alert rules: pure evaluation, de-duplication and counter windows with an injected clock;
the monitor against a real webhook receiver (http.server on 127.0.0.1)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from analytics.alerts import WEEK, AlertMonitor, AlertState, CounterWindow, Rule, evaluate, parse_rules
from analytics.config import ConfigError
from analytics.store import open_store
from analytics.store.base import Batch

pytestmark = pytest.mark.timeout(30)

DROP = Rule("logins dropped", "loginhour.count", 3600, "below_ratio_of_last_week", ratio=0.5)
REJECTS = Rule("payments rejected", "payment.rejected", 300, "above", threshold=10)


def test_below_ratio_of_last_week():
    found = {f.key: f for f in evaluate(DROP, {("dl", "a1"): 40, ("dl", "a2"): 60}, {("dl", "a1"): 100,
                                                                                     ("dl", "a2"): 100, ("dl", "a3"): 8})}
    assert found[("dl", "a1")].firing and not found[("dl", "a2")].firing
    assert found[("dl", "a3")].firing  # it vanished: 0 < 0.5 * 8
    assert not evaluate(DROP, {("dl", "a1"): 0}, {})[0].firing  # nothing last week: no alert
    assert "below 0.5 x last week's 100" in found[("dl", "a1")].text


def test_above_threshold():
    assert [f.firing for f in evaluate(REJECTS, {(): 10})] == [False]
    assert [f.firing for f in evaluate(REJECTS, {(): 11})] == [True]


def test_dedupe_quiet_period_and_resolved():
    state = AlertState(quiet=600)
    fire = evaluate(REJECTS, {(): 50})
    calm = evaluate(REJECTS, {(): 0})
    assert [n.kind for n in state.update(fire, now=1000)] == ["firing"]
    assert state.update(fire, now=1300) == []              # within the quiet period: not re-sent
    assert [n.kind for n in state.update(fire, now=1600)] == ["firing"]  # reminder after it
    notes = state.update(calm, now=1700)
    assert [n.kind for n in notes] == ["resolved"] and "resolved" in notes[0].text
    assert state.update(calm, now=1800) == []              # resolved once only
    assert [n.kind for n in state.update(fire, now=1900)] == ["firing"]


def test_counter_window_growth_slides():
    w = CounterWindow(horizon=1000)
    for t, v in ((0, 0), (100, 5), (200, 9), (400, 30)):
        w.add("payment.rejected", v, t)
    assert w.growth("payment.rejected", 300, now=400) == 25   # since the sample at t=100
    assert w.growth("payment.rejected", 1000, now=400) == 30
    assert w.growth("nothing", 300, now=400) == 0


def test_parse_rules_errors_name_the_rule():
    rules = parse_rules({"rules": [{"name": "d", "metric": "loginhour.count", "window": 3600,
                                    "compare": "below_ratio_of_last_week", "ratio": 0.5}]})
    assert rules == [Rule("d", "loginhour.count", 3600, "below_ratio_of_last_week", 0.0, 0.5)]
    for bad, msg in (({"metric": "x", "window": 1}, "metric must be"),
                     ({"metric": "loginhour.nope", "window": 1}, "no field 'nope'"),
                     ({"metric": "loginhour.count", "window": 0}, "window must be"),
                     ({"metric": "loginhour.count", "window": 5, "compare": "below"}, "compare must be"),
                     ({"metric": "loginhour.count", "window": 5, "colour": 1}, "unknown key")):
        with pytest.raises(ConfigError, match=msg):
            parse_rules({"rules": [bad]})


class _Receiver(BaseHTTPRequestHandler):
    posts: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.posts = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.posts
    server.shutdown()
    server.server_close()


def test_monitor_posts_slack_json_once_and_resolves(tmp_path, receiver):
    url, posts = receiver
    now = 1_420_700_400
    hour = now - 1800  # stays inside the sliding hour for the whole test
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.setup()
    b = Batch()
    b.upsert("loginhour", {"game": "dl", "area": "a1", "plat": "1", "ts": hour - WEEK}, set={"count": 100, "type": "login"})
    b.upsert("loginhour", {"game": "dl", "area": "a1", "plat": "1", "ts": hour}, set={"count": 30, "type": "login"})
    store.apply(b)
    clock = {"t": float(now)}
    counters = {"payment.rejected": 0}
    mon = AlertMonitor([DROP, REJECTS, Rule("x", "other.counter", 60, "above")], store, webhook=url, quiet=3600,
                       counters=lambda: counters, clock=lambda: clock["t"])
    assert [n.kind for n in mon.check()] == ["firing"]
    assert posts == [("application/json", {"text": posts[0][1]["text"]})]
    assert "logins dropped [dl/a1]" in posts[0][1]["text"] and "30" in posts[0][1]["text"]
    clock["t"] += 60
    counters["payment.rejected"] = 25
    notes = mon.check()  # the drop is still on (quiet), the rejections jump by 25 > 10
    assert [n.finding.rule for n in notes] == ["payments rejected"]
    b = Batch()
    b.upsert("loginhour", {"game": "dl", "area": "a1", "plat": "1", "ts": hour}, set={"count": 90, "type": "login"})
    store.apply(b)
    clock["t"] += 400  # the counter window (300 s) has slid past the jump
    notes = mon.check()
    assert sorted((n.kind, n.finding.rule) for n in notes) == [("resolved", "logins dropped"), ("resolved", "payments rejected")], [n.text for n in notes]
    assert len(posts) == 4 and all(set(p[1]) == {"text"} for p in posts)
    store.close()


def test_a_key_gone_from_both_windows_resolves(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.setup()
    b = Batch()
    b.upsert("loginhour", {"game": "dl", "area": "a1", "plat": "1", "ts": 1_000_000 - WEEK}, set={"count": 9})
    store.apply(b)
    clock = {"t": 1_000_100.0}
    mon = AlertMonitor([DROP], store, clock=lambda: clock["t"])
    assert [n.kind for n in mon.check()] == ["firing"]
    clock["t"] += 7200
    assert [n.kind for n in mon.check()] == ["resolved"]
    store.close()
