"""What every handler needs to take a request apart safely: bounded bodies, integers, masked secrets.

A bad input is a 4xx with a reason, never a 500: bodies are read within a bound
whether they come with Content-Length or chunked (Transfer-Encoding: chunked);
integers are ASCII digits within 64 bits (``int('²')`` and 5,000-digit numbers
raise, and SQLite cannot bind beyond 64 bits); and what is written down about a
bad request (dead letters) never holds a key.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

import falcon

from analytics.web.events import INT64_MAX, INT64_MIN, is_int64

__all__ = ["INT64_MIN", "INT64_MAX", "read_body", "int64", "is_int64", "Masker"]



def read_body(req: falcon.Request, limit: int, setting: str = "the limit") -> bytes:
    """The request body, at most `limit` bytes (413 naming `setting` beyond), with Content-Length or chunked.

    Without Content-Length falcon's bounded stream is empty, so a chunked body is
    read from the server's input stream, which decodes the chunks. A body that
    stops arriving is a 408, broken chunk framing a 400; both close the connection
    (the stream's position is lost).
    """
    if req.content_length is not None:
        if req.content_length > limit:
            raise falcon.HTTPError(falcon.HTTP_413, description=f"body of {req.content_length} bytes exceeds "
                                                                f"{setting} ({limit})")
        stream: Any = req.bounded_stream
    elif "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        stream = req.stream
    else:
        return b""
    parts, size = [], 0
    try:
        while size <= limit:
            chunk = stream.read(min(65536, limit + 1 - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except TimeoutError:   # the client stopped sending for the server's idle_timeout
        raise falcon.HTTPError(falcon.HTTP_408, description="the request body stopped arriving",
                               headers={"Connection": "close"}) from None
    except OSError as exc:  # broken chunked framing (gevent's _InvalidClientInput), a reset: the stream is lost
        raise falcon.HTTPError(falcon.HTTP_400, description=f"the request body could not be read: {exc}",
                               headers={"Connection": "close"}) from None
    if size > limit:
        raise falcon.HTTPError(falcon.HTTP_413, description=f"body exceeds {setting} ({limit})")
    return b"".join(parts)


def int64(name: str, text: str, minimum: int = INT64_MIN) -> int:
    """`text` as an integer of ASCII digits within [minimum, 2**63 - 1]; else a 400 that names it."""
    if not is_int64(text) or int(text) < minimum:
        shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
        raise falcon.HTTPError(falcon.HTTP_400, description=f"{name} must be an integer of ASCII digits from "
                                                            f"{minimum} to {INT64_MAX}, not {shown!r}")
    return int(text)


class Masker:
    """Replaces key values in what is written down about a request (dead letters): `api_key`
    parameters and JSON fields, and any configured key wherever it appears."""

    MASK = "***"
    _PARAM = re.compile(r"(?i)((?:^|[?&;])\s*api(?:_|%5f)key\s*(?:=|%3d))[^&;#\s]*")
    _FIELD = re.compile(r'(?i)("api_key"\s*:\s*)"(?:[^"\\]|\\.)*"')

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so a key that contains another is masked whole
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, raw: str) -> str:
        raw = self._PARAM.sub(lambda m: m.group(1) + self.MASK, raw)
        raw = self._FIELD.sub(lambda m: m.group(1) + f'"{self.MASK}"', raw)
        for s in self.secrets:
            raw = raw.replace(s, self.MASK)
        return raw

    def __call__(self, raw: Any) -> Any:
        """`raw` (bytes, str, or a decoded JSON value) with every key masked."""
        if isinstance(raw, bytes):
            return self.text(raw.decode("utf-8", "replace")).encode()
        if isinstance(raw, str):
            return self.text(raw)
        if isinstance(raw, dict):
            return {self(k) if isinstance(k, str) else k:
                    (self.MASK if isinstance(k, str) and k.lower() == "api_key" else self(v)) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self(v) for v in raw]
        return raw
