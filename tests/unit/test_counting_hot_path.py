"""DistinctPeriods.add_all, the counting bolts' hot loop, against one `add` per user."""
from __future__ import annotations

import random

import pytest

from bolts.common import ServerKey
from bolts.counting import DistinctPeriods

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("period, keep", [("hour", 72), ("hour", 2), ("day", 8), ("day", 1)])
def test_add_all_gathers_what_one_add_per_user_gathers(period: str, keep: int) -> None:
    rnd = random.Random(keep)
    one, many = DistinctPeriods(period, keep), DistinctPeriods(period, keep)
    servers = [ServerKey("dl", f"a{i}", "2001") for i in range(3)]
    for step in range(400):                   # packed tuples: several users of one server and time
        server, ts = rnd.choice(servers), 1420646400 + rnd.randrange(0, 10 * 86400)
        uids = [str(rnd.randrange(50)) for _ in range(rnd.randint(1, 6))]
        for uid in uids:
            one.add(server, uid, ts, "Asia/Shanghai")
        many.add_all(server, uids, ts, "Asia/Shanghai")
        if step % 50 == 49:                   # a flush now and then
            assert many.take() == one.take()
    assert many.take() == one.take()
    assert not many and not one
