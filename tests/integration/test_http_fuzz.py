"""A bounded fuzz of the intake and the read API on a real server on 127.0.0.1.

Random bodies (events, mutated events, batches, NDJSON, JSON of any shape,
bytes), headers (keys, content types, chunked transfer, broken chunk framing), query strings
(nesting, 64-bit edges, non-ASCII digits, percent-encoded bytes, repeated and
unknown parameters) and methods, from a seeded generator (FUZZ_SEED, FUZZ_CASES
override the defaults; a failure prints the seed and the request). It fails on
any 5xx, any beacon answer that is not the GIF, any error or traceback in the
log, and an accepted count that differs from the stored count: every event the
intake accepts is a login of a new user, so the users loginhour stores must add
up to the accepted events exactly. A request line of 8 KB or more (gevent's
MAX_REQUEST_LINE, nginx's default buffer too) is answered 414 before the app sees
it, the beacon included.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from collections import Counter
from urllib.parse import quote, urlencode

import orjson
import pytest
from gevent.pywsgi import MAX_REQUEST_LINE
from gevent.threadpool import ThreadPool

from analytics.config import load_settings
from analytics.store import open_store
from analytics.runners import LocalRunner
from analytics.topology import ComponentSpec, Topology

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

SEED = int(os.environ.get("FUZZ_SEED", "20"))
CASES = int(os.environ.get("FUZZ_CASES", "1000"))
#: The fuzz stops generating after this many seconds even if CASES are not done (a bound on a slow machine).
BUDGET_SECONDS = 60.0
WRITE, READ = "fuzz-write-0123456789", "fuzz-read-0123456789"
NOW = int(time.time())

NASTY_STRINGS = ["", " ", "²", "٣", "１２３", "9" * 20, "-" + "9" * 20, "9" * 5000, str(2 ** 63), str(2 ** 63 - 1),
                 "-0", "1e3", "NaN", "Infinity", "null", "true", "$gt", "$where", "a[b]", "%00", "\x00", "é",
                 "\u202e", "\U0001f600", "x" * 300, "x" * 70000, "2015-01-08", "2015-13-45", "2015-01-08T25:00",
                 "9999-12-31T23:59:59+14:00", "0001-01-01", "../../etc/passwd", "<script>", "' OR 1=1 --",
                 "login_logcount", "a,b,,c", ",", "dl"]
NASTY_VALUES = [None, True, False, 0, -1, 2 ** 63, 2 ** 64, -2 ** 63 - 1, 10 ** 30, 1.5, 1e300, -1e300, [], {},
                [1, [2, [3]]], {"a": {"b": {}}}, "", "²", "x" * 300, "9" * 5000]
READ_PATHS = ["/api/v1/stats/loginday", "/api/v1/stats/loginhour", "/api/v1/stats/payorderuser",
              "/api/v1/stats/payorderdetail", "/api/v1/stats/nosuch", "/api/v1/stats/%00", "/api/v1/collections",
              "/api/v1/games", "/api/v1/crm/user-stat/total-user", "/api/v1/crm/daily-stat/active-user",
              "/api/v1/cohorts", "/api/v1/monetization", "/api/v1/funnel", "/api/v1/today", "/api/v1/live",
              "/api/v1/http", "/", "/healthz", "/login", "/logout", "/static/js/dashboard.js", "/static/../app.py",
              "/nosuch", "/api/v1/event/save", "/pixel.gif"]
READ_PARAMS = ["game", "area", "plat", "from", "to", "limit", "userlist", "date", "game[$ne]", "x", "api_key"]


def dumps(value: object) -> bytes:
    """JSON of anything the fuzzer builds (json, not orjson: integers beyond 64 bits are part of the fuzz)."""
    return json.dumps(value, ensure_ascii=False).encode()


def deep(depth: int) -> object:
    """Objects and arrays nested `depth` levels (at most 250 as objects; deeper ones are text)."""
    d: object = 1
    for i in range(depth):
        d = {"a": d} if i % 2 else [d]
    return d


def deep_text(depth: int) -> str:
    """JSON text nested `depth` levels, any depth."""
    return '{"a":[' * (depth // 2) + "1" + "]}" * (depth // 2)


class Fuzzer:
    """Builds one random request per call; every event that could be valid is a login of a fresh uid."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.uid = 0

    def nasty(self) -> object:
        r = self.rnd.random()
        if r < 0.15:
            return deep(self.rnd.choice([2, 31, 33, 250])) if self.rnd.random() < 0.7 else \
                deep_text(self.rnd.choice([300, 1000]))
        if r < 0.5:
            return self.rnd.choice(NASTY_STRINGS)
        return self.rnd.choice(NASTY_VALUES)

    def event(self) -> dict:
        self.uid += 1
        ts = NOW - self.rnd.randrange(0, 3 * 86400)
        if self.rnd.random() < 0.5:
            ev: dict = {"game": "dl", "area": self.rnd.choice(["a1", "a2", 7]), "plat": self.rnd.choice(["1", 2]),
                        "uid": f"f{self.uid}", "ts": ts, "code": "login_logcount"}
            if self.rnd.random() < 0.3:
                ev["data"] = {"page": self.rnd.choice(NASTY_STRINGS[:30]), "n": self.rnd.randrange(100)}
        else:
            ev = {"user_id": f"f{self.uid}", "session_id": "s", "app_id": "dl", "type": "1",
                  "event_name": "login_logcount", "event_time": ts * 1000, "page": "home", "country": "TR",
                  "region": "a1", "city": "Izmir"}
        return ev

    def mutated(self) -> dict:
        ev = self.event()
        for _ in range(self.rnd.randrange(0, 3)):
            op = self.rnd.random()
            field = self.rnd.choice(sorted(ev))
            if op < 0.5:
                ev[field] = self.nasty()
            elif op < 0.7:
                ev.pop(field)
            elif op < 0.85:
                ev[self.rnd.choice(["extra", "data", "api_key", "é"])] = self.nasty()
            else:
                ev["data"] = {"nested": self.nasty()}
        return ev

    def headers(self, key_choices: list[str | None]) -> dict[str, str]:
        h: dict[str, str] = {}
        key = self.rnd.choice(key_choices)
        if key is not None:
            where = self.rnd.random()
            if where < 0.6:
                h["X-API-Key"] = key
            elif where < 0.8:
                h["Authorization"] = self.rnd.choice(["Bearer ", "bearer ", "Bearer  ", "Bearer ", "Basic "]) + key
            else:
                h["Cookie"] = f"analytics_read={key}; other=1"
        if self.rnd.random() < 0.1:
            h["X-Junk"] = self.rnd.choice(["é", "\x7f", "a" * 2000, ""])
        return h

    def body_request(self) -> tuple[str, str, dict[str, str], bytes]:
        r = self.rnd.random()
        ctype = self.rnd.choice(["application/json", "application/json; charset=utf-8", "application/x-ndjson",
                                 "application/ndjson", "text/plain", "", "multipart/form-data; boundary=x",
                                 "application/x-www-form-urlencoded"])
        if r < 0.3:
            body = dumps(self.mutated() if self.rnd.random() < 0.6 else self.event())
        elif r < 0.5:
            items = [self.mutated() if self.rnd.random() < 0.5 else self.event()
                     for _ in range(self.rnd.randrange(0, 60))]
            if ctype.startswith("application/x-ndjson") or ctype.startswith("application/ndjson"):
                body = b"\n".join(dumps(i) if self.rnd.random() < 0.9 else b"{not json" for i in items)
            else:
                body = dumps(items)
        elif r < 0.65:
            body = dumps(self.nasty())
        elif r < 0.75:
            depth = self.rnd.choice([100, 1000, 1100, 5000])
            body = b'{"a":' * depth + b"1" + b"}" * depth
        elif r < 0.85:
            body = bytes(self.rnd.randrange(256) for _ in range(self.rnd.randrange(0, 300)))
        else:
            body = self.rnd.choice([b"", b" ", b"null", b"[]", b"{}", b"\xff\xfe", b'"\\ud800"', b"1e400",
                                    b"[" * 2000, b'{"game": NaN}', b"x" * 70000])
        headers = self.headers([WRITE] * 6 + [READ, None, "wrong"])
        if ctype:
            headers["Content-Type"] = ctype
        path = self.rnd.choice(["/api/v1/event/save"] * 8 + ["/api/v1/crm/daily-stat/active-user", "/login"])
        return "POST", path, headers, body

    def query(self, params: list[tuple[str, object]]) -> str:
        parts = []
        for k, v in params:
            text = v if isinstance(v, str) else dumps(v).decode()
            if self.rnd.random() < 0.1:   # raw percent-encoded bytes, valid UTF-8 or not
                parts.append(quote(k) + "=" + "".join(f"%{self.rnd.randrange(256):02X}" for _ in range(5)))
            else:
                parts.append(urlencode({k: text}))
        return "&".join(parts)

    def beacon_request(self) -> tuple[str, str, dict[str, str], bytes]:
        ev = self.mutated() if self.rnd.random() < 0.6 else self.event()
        params: list[tuple[str, object]] = [(k, v) for k, v in ev.items()]
        key = self.rnd.choice([WRITE, WRITE, WRITE, READ, None, "wrong", "²"])
        if key is not None:
            params.append(("api_key", key))
        if self.rnd.random() < 0.2:
            params.append(self.rnd.choice([("ts", self.nasty()), ("api_key", WRITE), ("data", deep_text(300)),
                                           ("data", "{oops"), ("page", "home")]))
        self.rnd.shuffle(params)
        return "GET", "/pixel.gif?" + self.query(params), {}, b""

    def read_request(self) -> tuple[str, str, dict[str, str], bytes]:
        path = self.rnd.choice(READ_PATHS)
        params = [(self.rnd.choice(READ_PARAMS), self.rnd.choice(["dl", "a1", "1", "2015-01-08", "10"])
                   if self.rnd.random() < 0.5 else self.nasty()) for _ in range(self.rnd.randrange(0, 5))]
        if self.rnd.random() < 0.5:
            params.insert(0, ("game", "dl"))
        method = "GET" if self.rnd.random() < 0.9 else self.rnd.choice(["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
        q = self.query(params)
        return method, path + ("?" + q if q else ""), self.headers([READ] * 6 + [WRITE, None, "wrong"]), b""

    def __call__(self) -> tuple[str, str, dict[str, str], bytes]:
        r = self.rnd.random()
        if r < 0.4:
            return self.body_request()
        if r < 0.65:
            return self.beacon_request()
        return self.read_request()


def send(port: int, method: str, target: str, headers: dict[str, str], body: bytes, chunked: bool,
         broken: bool = False) -> tuple[int, dict, bytes]:
    """One request on its own connection (Connection: close); (status, headers, body), the body cut for streams.

    `broken`: the chunked framing is corrupted (a size that is not hex)."""
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 977]), body[i:i + 977]) for i in range(0, len(body), 977))
        payload += b"0\r\n\r\n"
        if broken:
            payload = b"zz\r\n" + payload
    else:
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        payload = body
    buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            sock.sendall("\r\n".join(head).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass    # the server answered (413) and closed before the whole body was sent: read the answer
        try:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
            if buf.partition(b"\r\n\r\n")[2:] and b"text/event-stream" not in buf.partition(b"\r\n\r\n")[0]:
                while chunk := sock.recv(65536):
                    buf += chunk
        except ConnectionResetError:
            pass    # closed with unread request bytes (after a 413): what arrived is the answer
    raw_head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return 0, {}, buf   # no answer at all: reported as a problem
    lines = raw_head.decode("latin-1").split("\r\n")
    got = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), got, rest


class _Errors(logging.Handler):
    """Every record at ERROR or above, or with a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@pytest.fixture
def running(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"))
    settings.extra["http"] = {"port": 0, "api_keys": {WRITE: "fuzz"}, "read_keys": {READ: "studio"},
                              "max_body_bytes": 65536, "max_batch": 50}
    settings.broker.linger_ms = 5
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.setup()
    topo = Topology([ComponentSpec("http", "spouts.http_intake:HttpIntakeSpout"),
                     ComponentSpec("loginhour", "bolts.login:LoginHourBolt", {"flush_seconds": 0.2})])
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    runner = LocalRunner(topo, settings, store=store).start()
    spout = runner.components["http"]
    assert spout.ready.wait(10), "the intake server did not start"
    try:
        yield spout, runner.components["loginhour"], store, tmp_path, errors
    finally:
        runner.stop(timeout=10)
        store.close()
        logging.getLogger().removeHandler(errors)


def stored_logins(store) -> int:
    return sum(d["count"] for d in store.find("loginhour"))


def test_fuzz_the_intake_and_the_read_api(running, capfd):
    spout, bolt, store, tmp_path, errors = running
    port = spout.port
    rnd = random.Random(SEED)
    fuzz = Fuzzer(rnd)
    log: list[tuple[str, str, int]] = []

    def run() -> list[str]:
        problems = []
        deadline = time.monotonic() + BUDGET_SECONDS
        for n in range(CASES):
            if time.monotonic() > deadline:
                break
            method, target, headers, body = fuzz()
            chunked = method == "POST" and rnd.random() < 0.25
            broken = chunked and rnd.random() < 0.1
            status, got, answer = send(port, method, target, headers, body, chunked, broken)
            log.append((method, target[:80], status))
            where = (f"seed {SEED} case {n}: {method} {target[:200]!r} headers={headers} body={body[:200]!r}"
                     f"{' chunked' if chunked else ''}{' (broken framing)' if broken else ''}")
            if status >= 500 or status == 0:
                problems.append(f"{status or 'no answer'} {answer[:200]!r} for {where}")
            if len(target) + 15 >= MAX_REQUEST_LINE:   # refused by gevent before the app, as by most proxies
                if status != 414:
                    problems.append(f"{status} for a request line over {MAX_REQUEST_LINE} bytes: {where}")
            elif target.startswith("/pixel.gif") and method == "GET" and (status != 200 or not answer.startswith(b"GIF")):
                problems.append(f"the beacon answered {status} {got.get('content-type')} for {where}")
        return problems

    pool = ThreadPool(1)
    try:
        problems = pool.spawn(run).get()
    finally:
        pool.kill()
    assert not problems, "\n".join(problems[:10])
    assert len(log) >= min(CASES, 200), f"only {len(log)} cases ran in {BUDGET_SECONDS} s"
    statuses = {s for _, _, s in log}
    assert {200, 400, 401}.issubset(statuses), statuses   # the fuzz reached past the doors, and was stopped at them

    # Every accepted event is a login of a new user: the users stored add up to the events accepted.
    accepted = sum(spout.intake.accepted.values())
    assert accepted > 50, accepted
    deadline = time.monotonic() + 30
    import gevent
    while stored_logins(store) < accepted and time.monotonic() < deadline:
        gevent.sleep(0.1)
    flushes = bolt.counters.flushes
    while bolt.counters.flushes < flushes + 2 and time.monotonic() < deadline:
        gevent.sleep(0.1)    # nothing more arrives after a settled count
    assert stored_logins(store) == accepted, (stored_logins(store), accepted, SEED)

    assert spout.server.app.counters.as_dict()["5xx"] == 0
    assert not errors.records, [(r.name, r.getMessage()[:300]) for r in errors.records[:5]]
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, (out + err)[-3000:]
    print(f"fuzz seed {SEED}: {len(log)} requests, statuses {sorted(Counter(s for _, _, s in log).items())}, "
          f"accepted {accepted}, rejected by the intake {spout.intake.rejected}")
    spout.dead_letters.close()
    letters = "".join(p.read_text(errors="replace") for p in (tmp_path / "data").rglob("*") if p.is_file()
                      and "deadletter" in str(p))
    assert letters and WRITE not in letters and READ not in letters
