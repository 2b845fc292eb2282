"""The committed sample (data/*_sample.txt) through the whole default topology, in one process.

The sample's true figures come from analytics.sample (computed from the records
it wrote, not by the bolts); the stored collections must equal them exactly,
duplicates, malformed lines, superseded payment snapshots and stale user
records notwithstanding.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from analytics.app import replay, source_spec
from analytics.config import GameSettings, load_settings
from analytics.sample import DEFAULT_GAMES, generate
from analytics.store import open_store
from analytics.store.base import MemberKey

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DATA = Path(__file__).resolve().parents[2] / "data"
#: The arguments data/*_sample.txt were generated with.
SAMPLE_ARGS = {"seed": 7, "days": 3, "users": 80}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    truth = generate(tmp / "regen", **SAMPLE_ARGS)
    for name, path in truth.files.items():
        assert path.read_bytes() == (DATA / name).read_bytes(), f"data/{name} is not what analytics.sample makes"
    settings = load_settings(env={}, data_dir=str(tmp / "data"), store=f"sqlite:///{tmp / 'stats.db'}")
    settings.games = {g: GameSettings(g, tz) for g, tz in DEFAULT_GAMES.items()}
    specs = [dataclasses.replace(source_spec(settings, "gamelog", [str(DATA / f"gamelog_{g}_sample.txt")], g),
                                 name=f"replay_gamelog_{g}") for g in DEFAULT_GAMES]
    specs += [source_spec(settings, s, [str(DATA / f"{s}_sample.txt")], None) for s in ("payment", "syncuser")]
    report = replay(settings, specs, progress=False, timeout=150)
    store = open_store(settings.store)
    yield truth, report, store
    store.close()


def test_every_tuple_arrives_and_bad_lines_are_rejected(pipeline):
    truth, report, _ = pipeline
    totals = report.totals()
    assert totals["rejected"] == 3 + 3 + 1 + 1     # the malformed lines of the four files
    assert totals["errors"] == 0


def test_distinct_users_per_day_and_hour(pipeline):
    truth, _, store = pipeline
    for (set_, game, area, plat, ts), members in truth.members.items():
        assert store.members(MemberKey(set_, game, area, plat, ts)) == members, (set_, game, plat, ts)
    login = {(d["game"], d["plat"], d["ts"]): d["count"] for d in store.find("loginday")}
    want = {(g, p, ts): len(m) for (s, g, a, p, ts), m in truth.members.items() if s == "login_day"}
    assert login == want
    server = {(d["game"], d["plat"], d["ts"]): d["active"] for d in store.find("server")}
    assert {k: v for k, v in server.items() if v} == want
    signup = {(d["game"], d["plat"], d["ts"]): d["count"] for d in store.find("signupday")}
    assert signup == {(g, p, ts): len(m) for (s, g, a, p, ts), m in truth.members.items() if s == "signup_day"}


def test_payments(pipeline):
    truth, _, store = pipeline
    got = {(d["game"], d["area"], d["plat"], d["ts"]): (d["count"], d["pay_count"], d["pay_amount"])
           for d in store.find("payorderuser")}
    want = {k: (len(u), sum(t for t, _ in u.values()), sum(a for _, a in u.values()))
            for k, u in truth.payments.items()}
    assert got == want
    server = {(d["game"], d["area"], d["plat"], d["ts"]): (d["pay_user"], d["pay_count"], d["pay_amount"])
              for d in store.find("server")}
    assert {k: v for k, v in server.items() if v != (0, 0, 0)} == want
    per_user: dict[tuple, float] = {}
    for (g, a, p, _), users in truth.payments.items():
        for uid, (_, amount) in users.items():
            per_user[(g, a, p, uid)] = per_user.get((g, a, p, uid), 0) + amount
    userpay = {(d["game"], d["area"], d["plat"], d["uid"]): d["amount"] for d in store.find("userpay")}
    assert {k: v for k, v in userpay.items() if v} == per_user
    assert all(d["times"] == d["amount"] == d["ts"] == d["last_pay_day"] == 0 for d in store.find("userpay")
               if (d["game"], d["area"], d["plat"], d["uid"]) not in per_user)


def test_sums_users_and_start_times(pipeline):
    truth, _, store = pipeline
    coin = {(d["game"], d["area"], d["plat"], d["ts"]): (d["consumed"], d["gained"]) for d in store.find("coinday")}
    assert coin == truth.coin_day
    shop = {(d["game"], d["area"], d["plat"], d["ts"], d["item"]): (d["count"], d["buy_times"], d["cost"])
            for d in store.find("shop")}
    assert shop == truth.shop
    grades = {(d["game"], d["area"], d["plat"], d["uid"]): d["grade"] for d in store.find("usercenter")}
    assert grades == truth.grades
    levels: dict[tuple, int] = {}
    for (g, a, p, _), grade in truth.grades.items():
        levels[(g, a, p, grade)] = levels.get((g, a, p, grade), 0) + 1
    assert {(d["game"], d["area"], d["plat"], d["grade"]): d["count"] for d in store.find("userlevel")
            if d["count"]} == levels
    assert {(d["game"], d["area"]): d["ts"] for d in store.find("serverstarttime")} == truth.first_seen
    assert store.find("mainline") and store.find("gamecopy") and store.find("cointype")
