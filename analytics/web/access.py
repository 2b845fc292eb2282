"""Who may read: read keys for the stats API and the dashboard, and the bind check (docs/http.md).

    [http]
    read_keys = { "r3ad-key" = "studio" }   # key -> name; when set, every read needs one
    public_read = false                       # true: serve reads without keys on a public address

A read request carries its key as `X-API-Key`, `Authorization: Bearer <key>`, or
the dashboard's cookie (set once by POST /login, HttpOnly and SameSite=Strict,
so the page's fetch() and EventSource calls carry it). Without a key, or with an
unknown one: 401; with a write-only key (an [http] api_keys entry): 403.
`/healthz` and the intake routes are never behind a read key.

A server whose app has read routes refuses to bind an address that is not
loopback unless read keys are configured or `public_read = true` says so on
purpose: `check_bind` raises ConfigError, which `analytics serve` turns into a
one-line error and exit status 2. Keys are compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import falcon

from analytics.config import ConfigError

__all__ = ["ReadAccess", "COOKIE", "OPEN_PATHS", "is_loopback", "key_of"]

log = logging.getLogger(__name__)

#: The dashboard's cookie holding its read key.
COOKIE = "analytics_read"
#: Paths that never need a read key: the intake has its own keys (api_keys), /healthz is for load
#: balancers, /login takes the key. (/ answers the login page itself when it has none.)
OPEN_PATHS = frozenset({"/healthz", "/api/v1/event/save", "/pixel.gif", "/login", "/logout"})


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address ('localhost' or 127.0.0.0/8, ::1); '' and 0.0.0.0 are not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _match(key: str, keys: Mapping[str, str]) -> str | None:
    """The name of `key` in `keys`, compared in constant time (every key is compared, digests of equal length)."""
    given, found = _digest(key), None
    for k, name in keys.items():
        if hmac.compare_digest(given, _digest(k)) and found is None:
            found = name
    return found


def key_of(req: falcon.Request) -> str | None:
    """The key a request carries: X-API-Key, else Authorization: Bearer, else the dashboard's cookie."""
    key = req.get_header("X-API-Key")
    if key:
        return key
    auth = req.get_header("Authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    cookies = req.get_cookie_values(COOKIE)
    return cookies[0] if cookies else None


#: What a read key may hold: a Bearer token's characters (RFC 6750), which a cookie carries unquoted.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def _keys(table: Mapping[str, Any], name: str, token: bool = False) -> dict[str, str]:
    keys = table.get(name) or {}
    if not isinstance(keys, Mapping) or not all(isinstance(k, str) and k and isinstance(v, str)
                                                for k, v in keys.items()):
        raise ConfigError(f"[http] {name} must be a table of \"key\" = \"name\", got {keys!r}")
    for k, who in keys.items():
        if token and not _TOKEN.fullmatch(k):
            raise ConfigError(f"[http] {name}: the key of {who!r} may hold only letters, digits and -._~+/ "
                              f"(a Bearer token; openssl rand -hex 24 makes one)")
    return dict(keys)


@dataclass
class ReadAccess:
    """The read side's keys: who may read, who is known but may only write."""
    #: Read key -> name; empty: reads need no key (then only on loopback, unless public_read).
    read_keys: dict[str, str] = field(default_factory=dict)
    #: The intake's write keys (api_keys): known, so a read with one is a 403, not a 401.
    write_keys: dict[str, str] = field(default_factory=dict)
    #: Serve reads without keys on a public address, on purpose.
    public_read: bool = False

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> "ReadAccess":
        public = table.get("public_read", False)
        if not isinstance(public, bool):
            raise ConfigError(f"[http] public_read must be true or false, got {public!r}")
        return cls(read_keys=_keys(table, "read_keys", token=True), write_keys=_keys(table, "api_keys"), public_read=public)

    @property
    def required(self) -> bool:
        """Whether reads need a key."""
        return bool(self.read_keys)

    def secrets(self) -> list[str]:
        """Every configured key (for masking them wherever a request is written down)."""
        return [*self.read_keys, *self.write_keys]

    def reader(self, key: str | None) -> str | None:
        """The name of a read key (None if it is not one)."""
        return _match(key, self.read_keys) if key else None

    def check(self, req: falcon.Request) -> None:
        """Raise 401 (no or unknown key) or 403 (a write-only key) unless the request may read."""
        if not self.required:
            return
        key = key_of(req)
        if key and self.reader(key) is not None:
            return
        if key and _match(key, self.write_keys) is not None:
            raise falcon.HTTPError(falcon.HTTP_403, description="this key may only send events; reading needs a "
                                                                "read key ([http] read_keys)")
        raise falcon.HTTPError(falcon.HTTP_401, description="missing or unknown read key (send it as X-API-Key "
                                                            "or Authorization: Bearer)",
                               headers={"WWW-Authenticate": 'Bearer realm="analytics"'})

    def check_bind(self, host: str) -> None:
        """Refuse a non-loopback address without read keys unless public_read says so (ConfigError)."""
        if is_loopback(host) or self.required or self.public_read:
            return
        raise ConfigError(f"[http] host {host!r} is not loopback and the read API has no read keys: set [http] "
                          f"read_keys, bind 127.0.0.1, or set public_read = true to serve reads to anyone")

