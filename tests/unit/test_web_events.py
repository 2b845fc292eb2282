"""HTTP intake events: validation, the event-save mapping, beacon query strings, batch parsing (pure)."""
from __future__ import annotations

import pytest

from analytics.sources import canonical
from analytics.tuples import record_id
from analytics.web.events import Invalid, Limits, from_query, parse_batch, to_body, validate

NOW = 1420700000
GAMELOG = {"game": "dl", "area": "a1", "plat": 2001, "uid": 42, "ts": 1420688004, "code": "login_logcount"}
SAVE = {"user_id": "u1", "session_id": "s1", "app_id": "dl", "type": "ios", "event_name": "signup_logcount",
        "event_time": 1420688004123, "page": "home", "country": "TR", "region": "a1", "city": "Istanbul"}


def test_gamelog_shape_is_the_gamelog_spouts_body():
    assert to_body(GAMELOG, NOW) == {"game": "dl", "area": "a1", "plat": "2001", "uid": "42", "ts": 1420688004,
                                     "code": "login_logcount", "data": {}}


def test_event_save_shape_is_mapped_and_millis_become_seconds():
    body = to_body(SAVE, NOW)
    assert body == {"game": "dl", "area": "a1", "plat": "ios", "uid": "u1", "ts": 1420688004,
                    "code": "signup_logcount",
                    "data": {"session_id": "s1", "page": "home", "country": "TR", "city": "Istanbul"}}


def test_id_is_stable_across_key_order_and_is_the_canonical_records_id():
    a = validate(GAMELOG, NOW)
    b = validate(dict(reversed(list(GAMELOG.items()))), NOW)
    assert a.id == b.id == record_id(canonical(GAMELOG))
    assert a.raw == canonical(GAMELOG) and a.topic == "gamelog.login_logcount"
    assert validate(dict(GAMELOG, uid=43), NOW).id != a.id


@pytest.mark.parametrize("event, message", [
    ({k: v for k, v in GAMELOG.items() if k != "uid"}, "missing: uid"),
    (dict(GAMELOG, ts="yesterday"), "ts must be an integer epoch"),
    (dict(GAMELOG, ts=NOW + 3 * 86400), "in the future"),
    (dict(GAMELOG, ts=100), "is before"),
    (dict(GAMELOG, code="dance"), "unknown event code 'dance'"),
    (dict(GAMELOG, game=""), "game must not be empty"),
    (dict(GAMELOG, game=["dl"]), "game must be a string"),
    (dict(GAMELOG, area="x" * 300), "size: area has 300 characters"),
    (dict(GAMELOG, data=[1]), "data must be an object"),
    (dict(GAMELOG, data={"x": "y" * 20000}), "size: data is"),
    (dict(GAMELOG, extra=1), "unknown field(s) extra"),
    ({k: v for k, v in SAVE.items() if k != "city"}, "missing: city"),
    (dict(SAVE, event_time=True), "event_time must be an integer epoch"),
    ("just a string", "must be a JSON object"),
])
def test_rejections_say_what_is_wrong(event, message):
    with pytest.raises(Invalid, match=None) as info:
        to_body(event, NOW)
    assert message in str(info.value)


def test_limits_are_configurable():
    with pytest.raises(Invalid):
        to_body(dict(GAMELOG, uid="x" * 11), NOW, Limits(max_field_chars=10))


def test_beacon_query_string():
    q = {k: str(v) for k, v in GAMELOG.items()}
    q["page"] = "home"
    ev = from_query(q)
    assert ev["ts"] == 1420688004 and ev["data"] == {"page": "home"}
    assert to_body(ev, NOW)["uid"] == "42"
    assert from_query({**q, "data": '{"a": 1}', "page": "x"})["data"] == {"a": 1, "page": "x"}
    save = from_query({k: str(v) for k, v in SAVE.items()})
    assert to_body(save, NOW)["ts"] == 1420688004
    with pytest.raises(Invalid, match="given 2 times"):
        from_query({"game": ["a", "b"]})
    with pytest.raises(Invalid, match="json: data"):
        from_query({**q, "data": "{nope"})


def test_parse_batch_forms():
    assert parse_batch(b'{"a": 1}', False) == {"a": 1}
    assert parse_batch(b'[{"a": 1}, 2]', False) == [{"a": 1}, 2]
    items = parse_batch(b'{"a": 1}\n\nnot json\n{"b": 2}\n', True)
    assert items[0] == {"a": 1} and isinstance(items[1], Invalid) and items[2] == {"b": 2}
    assert "line 3" in str(items[1])
    for bad in (b"", b"nope", b"3"):
        with pytest.raises(Invalid):
            parse_batch(bad, False)
