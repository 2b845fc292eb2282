"""The coin bolts (bolts/coin.py): sums, distinct consumers, reasons, dedupe of replayed records."""
from __future__ import annotations

import pytest

from bolts.coin import CoinDayBolt, CoinHourBolt, CoinSums, CoinTypeBolt, parse_coin
from tests.unit.bolt_fixtures import AREA, gamelog, make_bolt, open_test_store, run

pytestmark = pytest.mark.timeout(30)

DAY8 = 1420646400
SH = "Asia/Shanghai"


def coin(uid, ts, change, reason="shop", coin_type="yuanbao", id=None, **kw):
    return gamelog("coin_logchange", uid, ts, id=id, coin_type=coin_type, change=change, reason=reason, rest=100, **kw)


def test_sums_per_day_and_per_reason():
    day, typ = CoinSums("day"), CoinSums("day", by_reason=True)
    for t in (coin("u1", DAY8 + 1, -10), coin("u1", DAY8 + 2, -5, "upgrade"), coin("u2", DAY8 + 3, 30, "recharge"),
              coin("u2", DAY8 - 1, -1)):
        c = parse_coin(t.body)
        day.add(c, SH)
        typ.add(c, SH)
    sums = day.take()
    today = sums[("dl", AREA, "2001", DAY8)]
    assert (today.consumed, today.gained, today.consume_times, today.times, today.consumers) == (
        15, 30, 2, 3, {"u1"})
    assert sums[("dl", AREA, "2001", DAY8 - 86400)].consumed == 1
    by_reason = {k[4]: (s.consumed, s.gained, s.times) for k, s in typ.take().items() if k[3] == DAY8}
    assert by_reason == {"shop": (10, 0, 1), "upgrade": (5, 0, 1), "recharge": (0, 30, 1)}


def test_other_currencies_and_zero_changes_are_not_counted():
    assert parse_coin(coin("u", DAY8, -5, coin_type="gold").body) is None
    assert parse_coin(coin("u", DAY8, 0).body) is None
    bad = coin("u", DAY8, -5)
    del bad.body["data"]["reason"]
    with pytest.raises(ValueError, match="body.data.reason must be a non-empty string"):
        parse_coin(bad.body)


def test_bolts_write_sums_once_per_record_id(tmp_path):
    store = open_test_store(tmp_path)
    records = [coin("u1", DAY8 + 10, -10, id="a"), coin("u2", DAY8 + 20, -20, id="b"),
               coin("u2", DAY8 + 30, 50, "recharge", id="c"), coin("u3", DAY8 + 40, -5, coin_type="gold", id="d")]
    for cls in (CoinHourBolt, CoinDayBolt, CoinTypeBolt):
        bolt = make_bolt(cls, tmp_path, store)
        run(bolt, records + [records[0]])     # a duplicate in the same flush
        run(bolt, records[:2])                # a replay in a later flush
        assert bolt.counters.deduplicated == 3
        assert bolt.counters.ignored == 1
    day = store.find("coinday")
    assert day == [{"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8, "consumed": 30, "gained": 50,
                    "consume_times": 2, "consume_users": 2}]
    assert [(d["ts"], d["consumed"]) for d in store.find("coinhour")] == [(DAY8, 30)]
    assert {d["type"]: (d["consumed"], d["gained"], d["times"]) for d in store.find("cointype")} == {
        "shop": (30, 0, 2), "recharge": (0, 50, 1)}
