"""Taking requests apart safely (pure): 64-bit ASCII integers, nesting depth, masked keys, beacon numbers."""
from __future__ import annotations

import falcon
import orjson
import pytest

from analytics.web.events import Invalid, Limits, check_shape, from_query, is_int64, parse_batch, validate
from analytics.web.inputs import Masker, int64

pytestmark = pytest.mark.timeout(10)

NOW = 1420700000
EV = {"game": "dl", "area": "a1", "plat": "1", "uid": "u1", "ts": 1420688004, "code": "login_logcount"}


def nested(depth: int) -> dict:
    d: dict = {}
    for _ in range(depth - 1):
        d = {"a": d}
    return d


@pytest.mark.parametrize("text, ok", [("0", True), ("-12", True), (str(2 ** 63 - 1), True), (str(-2 ** 63), True),
                                      (str(2 ** 63), False), (str(-2 ** 63 - 1), False), ("9" * 20, False),
                                      ("9" * 5000, False), ("²", False), ("1²", False), ("٣", False), ("", False),
                                      ("+1", False), (" 1", False), ("1.0", False), ("0x10", False)])
def test_integers_are_ascii_digits_within_64_bits(text, ok):
    assert is_int64(text) is ok


def test_int64_is_a_400_that_names_the_parameter():
    assert int64("limit", "10", minimum=1) == 10
    for bad in ("0", "²", "9" * 20, "9" * 5000):
        with pytest.raises(falcon.HTTPError) as exc:
            int64("limit", bad, minimum=1)
        assert exc.value.status == falcon.HTTP_400 and "limit" in exc.value.description
        assert len(exc.value.description) < 200  # a 5,000-digit value is not echoed whole


def test_nesting_deeper_than_the_limit_is_invalid_at_any_depth():
    check_shape(nested(32), 32)
    for depth in (33, 300, 1000):
        with pytest.raises(Invalid, match="^depth: "):
            check_shape(nested(depth), 32)
    with pytest.raises(Invalid, match="^range: "):
        check_shape({"a": [1, 2 ** 64]}, 32)


@pytest.mark.parametrize("depth", [300, 1000])
def test_deep_bodies_and_beacon_data_are_invalid_not_errors(depth):
    body = b'{"a":' * depth + b"1" + b"}" * depth
    with pytest.raises(Invalid, match="^depth: "):
        parse_batch(body, False)
    with pytest.raises(Invalid, match="^depth: "):
        parse_batch(b"[" + body + b"]", False)
    items = parse_batch(body + b"\n" + orjson.dumps(EV), True)
    assert isinstance(items[0], Invalid) and str(items[0]).startswith("depth: ") and items[1] == EV
    with pytest.raises(Invalid, match="^depth: "):
        from_query({**{k: str(v) for k, v in EV.items()}, "data": body.decode()})
    with pytest.raises(Invalid, match="^depth: "):
        validate({**EV, "data": nested(depth)}, NOW)


def test_an_event_at_the_depth_limit_is_accepted():
    event = {**EV, "data": nested(Limits().max_depth - 1)}
    assert parse_batch(orjson.dumps(event), False) == event
    assert validate(event, NOW).body["data"] == event["data"]


@pytest.mark.parametrize("ts", ["²", "9" * 5000, "9" * 20, "１４２０６８８００４"])
def test_beacon_numbers_outside_ascii_64_bit_stay_strings_and_are_invalid(ts):
    event = from_query({**{k: str(v) for k, v in EV.items()}, "ts": ts})
    assert event["ts"] == ts
    with pytest.raises(Invalid, match="ts must be an integer epoch"):
        validate(event, NOW)


def test_beacon_ascii_ts_becomes_an_integer():
    assert from_query({"ts": " 1420688004 "}) == {"ts": 1420688004}
    assert from_query({"app_id": "dl", "event_time": "1420688004123"})["event_time"] == 1420688004123


def test_masker_hides_api_key_parameters_fields_and_configured_keys():
    mask = Masker(["s3cret-write-key", "r3ad"])
    assert mask("game=dl&api_key=abc&uid=1") == "game=dl&api_key=***&uid=1"
    assert mask("api_key=abc") == "api_key=***"
    assert mask("x=1&API%5Fkey=abc;y=2") == "x=1&API%5Fkey=***;y=2"
    assert mask("api_key=abc&api_key=def") == "api_key=***&api_key=***"
    assert mask(b'{"api_key": "abc", "x": 1}') == b'{"api_key": "***", "x": 1}'
    assert mask("uid=s3cret-write-key&page=r3ad") == "uid=***&page=***"
    assert mask({"data": {"api_key": "abc", "note": "key s3cret-write-key"}, "n": 1}) == \
        {"data": {"api_key": "***", "note": "key ***"}, "n": 1}
    assert mask(["r3ad", 2]) == ["***", 2]
