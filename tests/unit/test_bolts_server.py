"""The server bolt (bolts/server.py): $max of day state tuples, any order."""
from __future__ import annotations

import pytest

from analytics.tuples import Tuple
from bolts.server import ServerBolt, ServerDays, server_fields
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
