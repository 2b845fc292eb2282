"""The server bolt (bolts/server.py): whole rows from the stored inputs, $max, any order."""
from __future__ import annotations

import pytest

from analytics.store.base import Batch, StoreUnavailable
from analytics.tuples import Tuple
from bolts.server import ServerBolt, ServerDays, server_fields, server_row
from tests.unit.bolt_fixtures import AREA, make_bolt, open_test_store, run

pytestmark = pytest.mark.timeout(30)

DAY8 = 1420646400
KEY = {"game": "dl", "area": AREA, "plat": "2001", "ts": DAY8}


def state(type_, count, **extra):
    return {**KEY, "count": count, "type": type_, **extra}


def test_fields_by_type():
    assert server_fields(state("login", 2)) == (("dl", AREA, "2001", DAY8), {"active": 2})
    assert server_fields(state("payorderuser", 4, pay_amount=113.0, pay_count=8))[1] == {
        "pay_user": 4, "pay_count": 8, "pay_amount": 113.0}
    with pytest.raises(ValueError, match="body.type must be one of"):
        server_fields(state("logout", 1))


def test_largest_state_wins_whatever_the_order():
    d = ServerDays()
    for body in (state("login", 3), state("login", 1), state("signup", 1), state("createrole", 1)):
        d.add(body)
    assert d.take() == {("dl", AREA, "2001", DAY8): {"active": 3, "reg": 1, "create_role": 1}}


def test_bolt_upserts_server_documents(tmp_path):
    store = open_test_store(tmp_path)
    bolt = make_bolt(ServerBolt, tmp_path, store)
    run(bolt, [Tuple("login.day", "a", DAY8, state("login", 2)),
               Tuple("payorderuser.day", "b", DAY8, state("payorderuser", 4, pay_amount=113.0, pay_count=8))])
    run(bolt, [Tuple("login.day", "c", DAY8, state("login", 1)), Tuple("signup.day", "d", DAY8, state("signup", 1)),
               Tuple("createrole.day", "e", DAY8, state("createrole", 1))])
    assert store.find("server") == [{**KEY, "active": 2, "reg": 1, "create_role": 1, "pay_user": 4, "pay_count": 8,
                                     "pay_amount": 113.0}]


def test_row_takes_every_field_from_the_stored_inputs_zero_where_none():
    stored = {"loginday": {**KEY, "count": 5}, "payorderuser": {**KEY, "count": 2, "pay_count": 3, "pay_amount": 9.5}}
    assert server_row(stored, {"active": 4}) == {"active": 5, "reg": 0, "create_role": 0, "pay_user": 2,
                                                "pay_count": 3, "pay_amount": 9.5}
    assert server_row({}, {"reg": 1}) == {"active": 0, "reg": 1, "create_role": 0, "pay_user": 0, "pay_count": 0,
                                         "pay_amount": 0}


def stored_inputs(store, **counts):
    """Day documents as the day bolts and payorderuser store them."""
    batch = Batch()
    for collection, fields in counts.items():
        batch.upsert(collection, KEY, set=fields)
    store.apply(batch)


def test_one_input_alone_writes_the_whole_row_from_the_store(tmp_path):
    """A replay of the payment log alone: the day's loginday/signupday/createroleday are already stored."""
    store = open_test_store(tmp_path)
    stored_inputs(store, loginday={"count": 7, "type": "login"}, signupday={"count": 3, "type": "signup"},
                  createroleday={"count": 2, "type": "createrole"})
    run(make_bolt(ServerBolt, tmp_path, store),
        [Tuple("payorderuser.day", "p", DAY8, state("payorderuser", 1, pay_amount=6.0, pay_count=1))])
    assert store.find("server") == [{**KEY, "active": 7, "reg": 3, "create_role": 2, "pay_user": 1, "pay_count": 1,
                                     "pay_amount": 6.0}]


def test_a_day_without_payments_has_its_pay_fields_at_zero(tmp_path):
    store = open_test_store(tmp_path)
    stored_inputs(store, loginday={"count": 2, "type": "login"})
    run(make_bolt(ServerBolt, tmp_path, store), [Tuple("login.day", "a", DAY8, state("login", 2))])
    assert store.find("server") == [{**KEY, "active": 2, "reg": 0, "create_role": 0, "pay_user": 0, "pay_count": 0,
                                     "pay_amount": 0}]


def test_a_failed_store_read_keeps_the_days_for_the_next_flush(tmp_path):
    store = open_test_store(tmp_path)
    bolt = make_bolt(ServerBolt, tmp_path, store)
    real_find = store.find
    store.find = lambda *a, **k: (_ for _ in ()).throw(StoreUnavailable("down"))
    run(bolt, [Tuple("login.day", "a", DAY8, state("login", 2))])
    assert bolt.counters.errors == 1 and real_find("server") == []
    store.find = real_find
    run(bolt, [])
    assert real_find("server")[0]["active"] == 2
