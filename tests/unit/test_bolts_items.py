"""The shop and gamecopy bolts: per-item and per-dungeon sums with distinct users."""
from __future__ import annotations

import pytest

from analytics.store.base import MemberKey
from bolts.gamecopy import FubenSums, GameCopyBolt, parse_fuben
from bolts.shop import ShopBolt, ShopSums, parse_purchase
from tests.unit.bolt_fixtures import AREA, gamelog, make_bolt, open_test_store, run

pytestmark = pytest.mark.timeout(30)

DAY8 = 1420646400
SH = "Asia/Shanghai"


def buy(uid, ts, item, count, cost, id=None):
    return gamelog("shop_logbuy", uid, ts, id=id, item_id=item, item_name=f"name-{item}", count=count, cost=cost)


def fuben(uid, ts, fid, action, id=None):
    return gamelog("fuben_logchange", uid, ts, id=id, fuben_id=fid, fuben_name=f"dungeon-{fid}", action=action)


def test_shop_sums():
    s = ShopSums()
    for t in (buy("u1", DAY8, "i1", 2, 20), buy("u1", DAY8 + 5, "i1", 1, 10), buy("u2", DAY8 + 9, "i1", 3, 30),
              buy("u2", DAY8 + 9, "i2", 1, 99)):
        s.add(parse_purchase(t.body), SH)
    got = {k[4]: (v.count, v.buy_times, v.cost, v.users, v.item_name) for k, v in s.take().items()}
    assert got == {"i1": (6, 3, 60, {"u1", "u2"}, "name-i1"), "i2": (1, 1, 99, {"u2"}, "name-i2")}
    with pytest.raises(ValueError, match="count must be > 0"):
        parse_purchase(buy("u", DAY8, "i", 0, 1).body)


def test_shop_bolt_counts_each_record_once(tmp_path):
    store = open_test_store(tmp_path)
    bolt = make_bolt(ShopBolt, tmp_path, store)
    run(bolt, [buy("u1", DAY8, "i1", 2, 20, id="a"), buy("u2", DAY8 + 1, "i1", 1, 10, id="b")])
    run(bolt, [buy("u1", DAY8, "i1", 2, 20, id="a"), buy("u1", DAY8 + 2, "i1", 1, 10, id="c")])
    assert store.find("shop") == [{"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8, "item": "i1",
                                   "count": 4, "buy_times": 3, "cost": 40, "item_name": "name-i1", "users": 2}]
    assert store.members(MemberKey("shop_day", "dl", AREA, "2001", DAY8, "i1")) == {"u1", "u2"}


def test_gamecopy_sums_and_bolt(tmp_path):
    s = FubenSums()
    for t in (fuben("u1", DAY8, "f1", "enter"), fuben("u1", DAY8 + 1, "f1", "finish"),
              fuben("u2", DAY8 + 2, "f1", "enter")):
        s.add(parse_fuben(t.body), SH)
    assert [(v.enters, v.finishes, v.users) for v in s.take().values()] == [(2, 1, {"u1", "u2"})]
    with pytest.raises(ValueError, match="action must be one of"):
        parse_fuben(fuben("u", DAY8, "f", "leave").body)

    store = open_test_store(tmp_path)
    bolt = make_bolt(GameCopyBolt, tmp_path, store)
    run(bolt, [fuben("u1", DAY8, "f1", "enter", id="a"), fuben("u1", DAY8 + 1, "f1", "finish", id="b")])
    run(bolt, [fuben("u1", DAY8, "f1", "enter", id="a"), fuben("u2", DAY8 + 2, "f1", "enter", id="c")])
    assert store.find("gamecopy") == [{"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8, "fuben": "f1",
                                       "enters": 2, "finishes": 1, "fuben_name": "dungeon-f1", "users": 2}]
