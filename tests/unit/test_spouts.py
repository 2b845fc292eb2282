"""The three source spouts on real files: exact bodies, topics and ids; every kind of bad input.

Each spout runs its real loop against a PULL socket bound by the test (tests/spout_sink.py);
what it sends is decoded with the runtime's own transport and codec.
"""
from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from analytics.config import ConfigError, Settings
from analytics.sources import Backoff, Oversized, StateFile, take_line
from analytics.tuples import record_id
from spouts.gamelog import GAMELOG_CODES, GamelogSpout
from spouts.payment import PaymentSpout
from spouts.syncuser import SyncUserSpout
from tests.spout_sink import Sink

pytestmark = pytest.mark.timeout(20)

NOW = 1420700000  # 2015-01-08 06:53:20 UTC: the test clock


def gamelog(code: str = "login_logcount", acct: object = "3284681055", ts: object = 1420688004,
            area: object = "549140c8dbdb67794fc0fa3b", corpid: object = 2001) -> dict:
    return {"op": {"code": code, "id": 1003}, "area": area, "ts": ts,
            "data": {"corpid": corpid, "type": "signin", "server_name": "server1009", "opno": 1003,
                     "opname": code, "acct": acct}}


PAYMENT = {"game": "dl", "area": "549140c8dbdb67794fc0fa3b", "plat": "2001", "ts": 1420646400,
           "users": {"3412825528": {"times": 1, "amount": 2.0}, "3349885891": {"times": 1, "amount": 1.0},
                     "1525032152": {"amount": 100.0, "times": 5}, "3429688738": {"amount": 10.0, "times": 1}}}

USER = {"game": "wsdx", "area": "54598574dbdb677b6226a5df", "plat": "1059", "ts": 1420613068,
        "uid": "141560631361753593", "name": "superman", "grade": 3, "rest_yuanbao": 200,
        "birthday": 1418637569, "acctid": "kutheso@hotmail.com", "score": 930, "login_time": 1418888736}


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"))


def run(spout_cls, settings: Settings, tmp_path: Path, lines: list[bytes], **opts):
    """Write `lines` to a file, run the spout over it to the end; (spout, sink)."""
    src = tmp_path / f"in_{spout_cls.name}.txt"
    src.write_bytes(b"".join(lines))
    opts.setdefault("follow", False)
    with Sink() as sink:
        spout = spout_cls(sink.context(settings, clock=lambda: float(NOW)), files=[str(src)], **opts)
        sink.run(spout)
    return spout, sink


def dead_letters(settings: Settings, name: str) -> list[dict]:
    path = Path(settings.data_dir, "deadletter", f"{name}.jsonl")
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


# -- gamelog: good records ----------------------------------------------------------------
def test_the_same_line_in_two_games_logs_gets_two_ids(settings, tmp_path):
    """Gamelog lines do not name their game: the id must, or sums would drop one game's record."""
    same = [line(gamelog("coin_logchange", acct="u1"))]
    (tmp_path / "dl").mkdir(), (tmp_path / "ws").mkdir()
    _, dl = run(GamelogSpout, settings, tmp_path / "dl", same, game="dl")
    _, ws = run(GamelogSpout, settings, tmp_path / "ws", same, game="wsdx")
    assert [t.id for t in dl.tuples] == [record_id(same[0], "dl")]
    assert [t.id for t in ws.tuples] == [record_id(same[0], "wsdx")] != [t.id for t in dl.tuples]


def test_gamelog_emits_exact_bodies_topics_and_ids(settings, tmp_path):
    recs = [gamelog(code, acct=f"u{i}") for i, code in enumerate(GAMELOG_CODES)]
    recs.append(gamelog("login_logcount", acct=3284681055, area=7, corpid="2002"))  # ints become strings
    lines = [line(r) for r in recs]
    spout, sink = run(GamelogSpout, settings, tmp_path, lines, game="dl")

    # frames are batched per topic, so arrival order is per topic: compare by id
    got = {t.id: t for t in sink.tuples}
    assert len(sink.tuples) == len(got) == len(lines)
    assert [got[record_id(x, "dl")].topic for x in lines] == \
        [f"gamelog.{c}" for c in GAMELOG_CODES] + ["gamelog.login_logcount"]
    assert all(t.ts == 1420688004 for t in sink.tuples)
    first = got[record_id(lines[0], "dl")]
    # login, sign-up and create-role tuples say who, where and when only
    assert first.body == {"game": "dl", "area": "549140c8dbdb67794fc0fa3b", "plat": "2001", "uid": "u0",
                          "ts": 1420688004, "code": "login_logcount"}
    assert {c for c in GAMELOG_CODES if "data" not in got[record_id(lines[GAMELOG_CODES.index(c)], "dl")].body} \
        == {"login_logcount", "signup_logcount", "createrole_logcount"}
    coin = got[record_id(lines[GAMELOG_CODES.index("coin_logchange")], "dl")].body
    assert coin["data"] == recs[GAMELOG_CODES.index("coin_logchange")]["data"]  # others pass data on as received
    last = got[record_id(lines[-1], "dl")].body
    assert (last["area"], last["plat"], last["uid"]) == ("7", "2002", "3284681055")
    assert spout.counters.emitted == {**{f"gamelog.{c}": 1 for c in GAMELOG_CODES}, "gamelog.login_logcount": 2}
    assert (spout.counters.rejected, spout.counters.ignored, spout.counters.errors) == (0, 0, 0)
    assert dead_letters(settings, "gamelog") == []
    # end of stream: one barrier per topic it routes, with what was sent on it
    assert {b["topic"]: b["sent"] for b in sink.barriers} == {f"gamelog.{c}": (2 if c == "login_logcount" else 1)
                                                               for c in GAMELOG_CODES}
    # and every record is in the disk log, byte for byte
    logs = sorted(Path(settings.data_dir).glob("gamelog_*.txt"))
    assert [p.name for p in logs] == ["gamelog_201501080653.txt"]
    assert logs[0].read_bytes() == b"".join(lines)


def test_gamelog_unknown_code_is_ignored_not_rejected(settings, tmp_path):
    lines = [line(gamelog("vip_logchange")), line(gamelog("login_logcount")), line(gamelog("chat_log"))]
    spout, sink = run(GamelogSpout, settings, tmp_path, lines, game="dl")
    assert [t.topic for t in sink.tuples] == ["gamelog.login_logcount"]
    assert spout.counters.ignored == 2
    assert spout.counters.rejected == 0
    assert dead_letters(settings, "gamelog") == []


def big_line() -> bytes:
    rec = gamelog()
    rec["data"]["blob"] = "x" * 300
    return line(rec)


BAD_GAMELOG = [
    (b"not json\n", "json: "),
    (b'{"op": {"code": "login_logcount"}, "area": "a", \n', "json: "),
    (b'\xff\xfe{"op": 1}\n', "encoding: not UTF-8 (byte 0xff at offset 0)"),
    (b'[1, 2, 3]\n', "type: record must be a JSON object, got list"),
    (line({k: v for k, v in gamelog().items() if k != "op"}), "missing: op"),
    (line({**gamelog(), "op": {"id": 1}}), "missing: op.code"),
    (line({**gamelog(), "op": "login"}), "type: op must be an object, got str"),
    (line({**gamelog(), "op": {"code": 5}}), "type: op.code must be a string, got 5"),
    (line({k: v for k, v in gamelog().items() if k != "area"}), "missing: area"),
    (line(gamelog(area="")), "type: area must not be empty"),
    (line({k: v for k, v in gamelog().items() if k != "ts"}), "missing: ts"),
    (line(gamelog(ts="abc")), "type: ts must be an integer epoch, got 'abc'"),
    (line(gamelog(ts=True)), "type: ts must be an integer epoch, got True"),
    (line(gamelog(ts=1420688004.5)), "type: ts must be an integer epoch, got 1420688004.5"),
    (line(gamelog(ts=4102444800)), f"time: ts 4102444800 is more than 24 h in the future (now {NOW})"),
    (line(gamelog(ts=5)), "time: ts 5 is before 946684800 (2000-01-01)"),
    (line({**gamelog(), "data": None}), "missing: data"),
    (line({**gamelog(), "data": [1]}), "type: data must be an object, got list"),
    (line(gamelog(acct=None)), "missing: data.acct"),
    (line(gamelog(acct={"id": 1})), "type: data.acct must be a string or integer, got {'id': 1}"),
    (line(gamelog(corpid=None)), "missing: data.corpid"),
    (line(gamelog(corpid=2.5)), "type: data.corpid must be a string or integer, got 2.5"),
]


@pytest.mark.parametrize("raw,reason", BAD_GAMELOG, ids=[r for _, r in BAD_GAMELOG])
def test_gamelog_rejects_bad_input_into_dead_letters(settings, tmp_path, raw, reason):
    good = line(gamelog())
    spout, sink = run(GamelogSpout, settings, tmp_path, [good, raw, good], game="dl")
    # the bad line does not stop the spout (the two good ones travel packed in one tuple)
    assert len(sink.tuples) + spout.counters.combined == 2
    assert spout.counters.rejected == 1
    (dl,) = dead_letters(settings, "gamelog")
    assert dl["reason"].startswith(reason), dl["reason"]
    assert dl["component"] == "gamelog"
    assert dl["raw"] == raw.rstrip(b"\n").decode("utf-8", errors="replace")
    assert spout.dead_letters.by_reason == {reason.split(":")[0]: 1}
    # a rejected line is not in the disk log
    (log,) = Path(settings.data_dir).glob("gamelog_*.txt")
    assert log.read_bytes() == good + good


def test_gamelog_rejects_an_oversized_line_and_keeps_reading(settings, tmp_path):
    big = big_line()
    good = line(gamelog())
    spout, sink = run(GamelogSpout, settings, tmp_path, [big, good, big.rstrip(b"\n")], game="dl",
                      max_line_bytes=len(good) + 20)
    assert [t.id for t in sink.tuples] == [record_id(good, "dl")]
    assert spout.counters.rejected == 2
    dls = dead_letters(settings, "gamelog")
    n = len(big) - 1
    assert [d["reason"] for d in dls] == [f"size: line of {n} bytes exceeds max_line_bytes ({len(good) + 20})"] * 2
    assert dls[0]["raw"] == big[:1024].decode().rstrip("\n")  # the head is kept for the operator


def test_gamelog_many_bad_kinds_counted_by_kind(settings, tmp_path):
    lines = [b"nope\n", b"\n", b"   \n", line(gamelog(ts="x")), line(gamelog(acct=None)), line(gamelog()),
             b"\x80\x81\n", line(gamelog(ts=4102444800))]
    spout, sink = run(GamelogSpout, settings, tmp_path, lines, game="dl")
    assert len(sink.tuples) == 1
    assert spout.counters.rejected == 5  # blank lines are not records
    assert spout.dead_letters.by_reason == {"json": 1, "type": 1, "missing": 1, "encoding": 1, "time": 1}
    assert len(dead_letters(settings, "gamelog")) == 5


def test_gamelog_limits_are_options(settings, tmp_path):
    lines = [line(gamelog(ts=NOW + 7200)), line(gamelog(ts=1000000000))]
    spout, sink = run(GamelogSpout, settings, tmp_path, lines, game="dl", max_future_seconds=3600,
                      min_ts=1300000000)
    assert sink.tuples == []
    assert [d["reason"] for d in dead_letters(settings, "gamelog")] == [
        f"time: ts {NOW + 7200} is more than 1 h in the future (now {NOW})",
        "time: ts 1000000000 is before 1300000000 (2011-03-13)"]


def test_gamelog_options_come_from_the_sources_table(tmp_path):
    src = tmp_path / "g.txt"
    src.write_bytes(line(gamelog()))
    settings = Settings(data_dir=str(tmp_path / "data"),
                        sources={"gamelog": {"game": "wsdx", "files": [str(src)], "follow": False}})
    with Sink() as sink:
        spout = GamelogSpout(sink.context(settings, clock=lambda: float(NOW)))
        sink.run(spout)
    assert [t.body["game"] for t in sink.tuples] == ["wsdx"]
    assert spout.progress() == (src.stat().st_size, src.stat().st_size)


def test_spouts_fail_fast_on_bad_configuration(settings, tmp_path):
    with Sink() as sink:
        ctx = sink.context(settings)
        with pytest.raises(ConfigError, match="option 'game'"):
            GamelogSpout(ctx, files=[str(tmp_path / "x")])
        with pytest.raises(ConfigError, match="exactly one source.*got none"):
            GamelogSpout(ctx, game="dl")
        with pytest.raises(ConfigError, match="got files, stdin"):
            SyncUserSpout(ctx, files=["a"], stdin=True)
        with pytest.raises(ConfigError, match="needs option 'game'"):
            PaymentSpout(ctx, http="http://127.0.0.1:9/pay")


def test_gamelog_never_reads_its_own_disk_log(settings, tmp_path):
    data = Path(settings.data_dir)
    data.mkdir(parents=True)
    (data / "gamelog_201501010000.txt").write_bytes(line(gamelog(acct="old")))
    (data / "other.txt").write_bytes(line(gamelog(acct="new")))
    with Sink() as sink:
        spout = GamelogSpout(sink.context(settings, clock=lambda: float(NOW)), files=[str(data / "*.txt")],
                             follow=False, game="dl")
        sink.run(spout)
    assert [t.body["uid"] for t in sink.tuples] == ["new"]


# -- payment ---------------------------------------------------------------------------
def test_payment_emits_the_seed_record(settings, tmp_path):
    rec = {**PAYMENT, "plat": 2001, "users": {**PAYMENT["users"], "9": {"times": 2, "amount": 3}}}
    lines = [line(PAYMENT), line(rec)]
    spout, sink = run(PaymentSpout, settings, tmp_path, lines)
    assert [t.topic for t in sink.tuples] == ["payment", "payment"]
    assert [t.id for t in sink.tuples] == [record_id(x) for x in lines]
    assert sink.tuples[0].body == PAYMENT
    assert sink.tuples[0].ts == 1420646400
    body = sink.tuples[1].body
    assert body["plat"] == "2001"
    assert body["users"]["9"] == {"times": 2, "amount": 3.0} and isinstance(body["users"]["9"]["amount"], float)
    assert [b["topic"] for b in sink.barriers] == ["payment"]


BAD_PAYMENT = [
    ({k: v for k, v in PAYMENT.items() if k != "users"}, "missing: users"),
    ({**PAYMENT, "users": [1]}, "type: users must be an object of uid -> {times, amount}, got list"),
    ({**PAYMENT, "users": {"u1": 3}}, "type: users.u1 must be an object {times, amount}, got int"),
    ({**PAYMENT, "users": {"u1": {"times": -1, "amount": 1}}}, "type: users.u1.times must be >= 0, got -1"),
    ({**PAYMENT, "users": {"u1": {"times": 1, "amount": "2"}}}, "type: users.u1.amount must be a number, got '2'"),
    ({**PAYMENT, "users": {"u1": {"times": 1, "amount": -2.0}}}, "type: users.u1.amount must be >= 0, got -2.0"),
    ({**PAYMENT, "users": {"u1": {"amount": 2.0}}}, "missing: users.u1.times"),
    ({k: v for k, v in PAYMENT.items() if k != "game"}, "missing: game"),
    ({**PAYMENT, "plat": [2001]}, "type: plat must be a string or integer, got [2001]"),
    ({**PAYMENT, "ts": "1420646400"}, "type: ts must be an integer epoch, got '1420646400'"),
]


@pytest.mark.parametrize("rec,reason", BAD_PAYMENT, ids=[r for _, r in BAD_PAYMENT])
def test_payment_rejects_bad_records(settings, tmp_path, rec, reason):
    spout, sink = run(PaymentSpout, settings, tmp_path, [line(rec), line(PAYMENT)])
    assert [t.body for t in sink.tuples] == [PAYMENT]
    assert [d["reason"] for d in dead_letters(settings, "payment")] == [reason]
    assert spout.counters.rejected == 1


# -- syncuser --------------------------------------------------------------------------
def test_syncuser_emits_the_seed_record(settings, tmp_path):
    lines = [line(USER), line({**USER, "plat": 1059, "uid": 141560631361753594, "score": 9.5})]
    spout, sink = run(SyncUserSpout, settings, tmp_path, lines)
    assert [(t.topic, t.id, t.ts) for t in sink.tuples] == [("syncuser", record_id(x), USER["ts"]) for x in lines]
    assert sink.tuples[0].body == USER
    assert (sink.tuples[1].body["plat"], sink.tuples[1].body["uid"], sink.tuples[1].body["score"]) == \
        ("1059", "141560631361753594", 9.5)


BAD_USER = [
    ({k: v for k, v in USER.items() if k != "uid"}, "missing: uid"),
    ({**USER, "grade": "3"}, "type: grade must be an integer, got '3'"),
    ({**USER, "rest_yuanbao": -5}, "type: rest_yuanbao must be >= 0, got -5"),
    ({**USER, "name": 7}, "type: name must be a string, got 7"),
    ({**USER, "ts": 4102444800}, f"time: ts 4102444800 is more than 24 h in the future (now {NOW})"),
    ({**USER, "login_time": "yesterday"}, "type: login_time must be an integer, got 'yesterday'"),
]


@pytest.mark.parametrize("rec,reason", BAD_USER, ids=[r for _, r in BAD_USER])
def test_syncuser_rejects_bad_records(settings, tmp_path, rec, reason):
    spout, sink = run(SyncUserSpout, settings, tmp_path, [line(rec), line(USER)])
    assert [t.body for t in sink.tuples] == [USER]
    assert [d["reason"] for d in dead_letters(settings, "syncuser")] == [reason]


# -- reader pieces ---------------------------------------------------------------------
def test_take_line_complete_partial_and_oversized():
    import io
    f = io.BytesIO(b"abc\n" + b"x" * 50 + b"\n" + b"tail")
    assert take_line(f.readline, 10, False) == (b"abc\n", 4)
    big, used = take_line(f.readline, 10, False)
    assert isinstance(big, Oversized) and (big.size, used, bytes(big)) == (50, 51, b"x" * 50)
    assert take_line(f.readline, 10, False) == (None, -4)   # incomplete, more may come
    f.seek(f.tell() - 4)
    assert take_line(f.readline, 10, True) == (b"tail", 4)  # final: the last line counts
    assert take_line(f.readline, 10, True) == (None, 0)


def test_state_file_is_atomic_throttled_and_survives_corruption(tmp_path):
    st = StateFile(tmp_path / "s" / "x.json", min_interval=60)
    assert st.load() == {}
    assert st.save({"cursor": 1}) is True
    assert st.save({"cursor": 2}) is False           # throttled: kept pending
    assert StateFile(st.path).load() == {"cursor": 1}
    assert st.flush() is True
    assert StateFile(st.path).load() == {"cursor": 2}
    assert list(st.path.parent.iterdir()) == [st.path]  # no temporary file left
    st.path.write_text("{broken")
    assert StateFile(st.path).load() == {}
    assert len(list(st.path.parent.glob("x.json.corrupt-*"))) == 1


def test_backoff_is_exponential_and_capped():
    b = Backoff(0.5, 4.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5


def test_gamelog_packs_who_where_when_records_per_server_and_slot(settings, tmp_path):
    from analytics.tuples import derived_id
    t0 = 1420688100  # 15-minute slot 1578542 starts at 1420687800
    recs = [gamelog(acct="u1", ts=t0 + 60), gamelog(acct="u2", ts=t0), gamelog(acct="u1", ts=t0 + 90),  # one slot
            gamelog(acct="u3", ts=t0 + 900),                     # the next slot: alone, sent as it is
            gamelog(acct="u4", ts=t0, area="other"),             # another server: alone
            gamelog("signup_logcount", acct="u1", ts=t0 + 5),    # another code: alone
            gamelog("coin_logchange", acct="u1", ts=t0)]         # not who-where-when: never packed
    lines = [line(r) for r in recs]
    spout, sink = run(GamelogSpout, settings, tmp_path, lines, game="dl")
    by_id = {t.id: t for t in sink.tuples}
    packed = by_id[derived_id(*(record_id(lines[i], "dl") for i in (0, 1, 2)))]
    assert packed.topic == "gamelog.login_logcount" and packed.ts == t0
    assert packed.body == {"game": "dl", "area": "549140c8dbdb67794fc0fa3b", "plat": "2001", "ts": t0,
                           "code": "login_logcount", "uids": ["u1", "u2"]}
    for i in (3, 4, 5, 6):
        assert "uid" in by_id[record_id(lines[i], "dl")].body
    assert len(sink.tuples) == 5 and spout.counters.combined == 2
    assert sum(spout.counters.emitted.values()) + spout.counters.combined == len(recs)  # every record accepted
    assert {b["topic"]: b["sent"] for b in sink.barriers}["gamelog.login_logcount"] == 3  # tuples, as received
    (log,) = Path(settings.data_dir).glob("gamelog_*.txt")
    assert log.read_bytes() == b"".join(lines)  # every record in the disk log
    (tmp_path / "off").mkdir()
    _, unpacked = run(GamelogSpout, settings, tmp_path / "off", lines, game="dl", pack_users=False)
    assert len(unpacked.tuples) == len(recs)
