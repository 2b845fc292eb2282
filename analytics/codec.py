"""The wire codec: one frame carries a batch of tuples of one topic.

orjson was chosen by measurement on this machine (encode+decode of a 217-byte
gamelog record: orjson ~1 us, msgpack ~2 us, stdlib json ~8 us); bench/bench_codec.py
re-measures it. A batch is a JSON array of [id, ts, body] triples: batching is
what lets one broker hop carry >1M tuples/s instead of ~50k/s.
"""
from __future__ import annotations

from typing import Any, Iterable

import orjson

from analytics.tuples import Tuple

__all__ = ["encode_batch", "decode_batch", "encode_obj", "decode_obj", "CodecError"]


class CodecError(ValueError):
    """A frame could not be decoded (a peer speaking another protocol, or corruption)."""


def encode_batch(tuples: Iterable[Tuple]) -> bytes:
    """Encode tuples (all of one topic) into one frame payload."""
    return orjson.dumps([(t.id, t.ts, t.body) for t in tuples])


def decode_batch(topic: str, payload: bytes) -> list[Tuple]:
    """Decode a frame payload back into tuples of `topic`; CodecError unless every item is
    an [id: str, ts: int, body: object] triple (a forged or corrupt frame never reaches a bolt)."""
    try:
        out = [Tuple(topic, i, ts, body) for i, ts, body in orjson.loads(payload)]
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise CodecError(f"bad batch frame on topic {topic!r}: {exc}") from None
    for t in out:
        if type(t.id) is not str or type(t.ts) is not int or type(t.body) is not dict:
            raise CodecError(f"bad batch frame on topic {topic!r}: item {[t.id, t.ts, t.body]!r:.120} "
                             f"is not [id, ts, body]")
    return out


def encode_obj(obj: Any) -> bytes:
    """Encode a control payload (barriers, reports)."""
    return orjson.dumps(obj)


def decode_obj(payload: bytes) -> dict[str, Any]:
    """Decode a control payload (barriers, reports): a JSON object, or CodecError."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"bad control frame: {exc}") from None
    if not isinstance(obj, dict):
        raise CodecError(f"bad control frame: expected an object, got {type(obj).__name__}")
    return obj
