"""Cluster membership on etcd v3: node registration, broker discovery, status, partitions.

Keys, all under ``/analytics/<cluster>/``:

* ``nodes/<host>/<name>``: one JSON document per running component
  ``{name, role, host, pid, endpoints, started, updated, health: {state, reason},
  counters: {...}}`` bound to a lease the process keeps alive. A process that dies
  disappears when its lease expires (``[cluster] lease_ttl``, default 10 s).
* ``members/<bolt>/<instance>``: one key per live instance of a partitioned bolt,
  bound to that instance's lease; `PartitionAssigner` reads them.

The broker is an ordinary node with role ``"broker"`` and endpoints
``{"receiver", "sender"}``: `publish_broker` registers it, `discover_broker` finds it.

Losing etcd degrades health reporting, never the data path: the background
greenlets log one warning per outage, report ``connected = False``, retry with
backoff and register again (with a new lease) when etcd is back. Nothing here
raises into the caller because etcd is down, except the explicit read calls
(`list_nodes`, `discover_broker`), whose callers ask for an answer.

This is the only module that imports the etcd client (etcd3gw: etcd's HTTP/JSON
gateway over requests, cooperative under gevent's monkey patching; see
docs/cluster.md for why not python-etcd3). Without monkey patching the greenlets
still work, but each HTTP call blocks the hub for its duration (tests do this).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any, Callable, Iterable, Mapping

import etcd3gw
import gevent
import gevent.event
import requests
from etcd3gw.exceptions import Etcd3Exception

from analytics.config import ConfigError, Settings, redact

__all__ = [
    "ClusterError", "ClusterUnavailable", "BrokerNotFound",
    "NodeRegistration", "PartitionAssigner",
    "start_node", "publish_broker", "discover_broker", "list_nodes", "render_status", "status",
    "assign_partitions", "partitions_for",
    "HEALTH_STATES", "EXIT_OK", "EXIT_PROBLEM", "EXIT_UNREACHABLE",
    "lease_ttl", "nodes_prefix", "node_key", "members_prefix",
]

log = logging.getLogger(__name__)

#: Root of every key this project writes.
ROOT = "/analytics"
#: Health states a node reports, from good to bad.
HEALTH_STATES = ("ok", "degraded", "failing")
#: `analytics status` exit codes.
EXIT_OK, EXIT_PROBLEM, EXIT_UNREACHABLE = 0, 1, 2
#: Default lease TTL in seconds ([cluster] lease_ttl).
DEFAULT_LEASE_TTL = 10
#: The grpc-gateway path of etcd >= 3.4 ([cluster] api_path to override, e.g. "/v3beta/" for 3.3).
DEFAULT_API_PATH = "/v3/"

# What a failed etcd call can raise: the client's own errors, and requests' for
# anything it does not translate (e.g. a reset mid-response, invalid JSON).
_ETCD_ERRORS = (Etcd3Exception, requests.RequestException, ValueError, KeyError, OSError)


class ClusterError(RuntimeError):
    """Base of the errors this module raises on purpose."""


class ClusterUnavailable(ClusterError):
    """etcd is not configured or cannot be reached; the message says which and where."""


class BrokerNotFound(ClusterError):
    """No live node with role "broker" appeared within the timeout."""


class _LeaseLost(Exception):
    """The lease expired (or vanished) while we were still running."""


# -- settings and keys ----------------------------------------------------------------
def _options(settings: Settings) -> Mapping[str, Any]:
    opts = settings.extra.get("cluster", {})
    if not isinstance(opts, Mapping):
        raise ConfigError(f"[cluster] must be a table, not {opts!r}")
    return opts


def lease_ttl(settings: Settings) -> int:
    """Lease TTL in whole seconds ([cluster] lease_ttl; etcd's minimum is 2 s with default timing)."""
    ttl = _options(settings).get("lease_ttl", DEFAULT_LEASE_TTL)
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl < 2:
        raise ConfigError(f"[cluster] lease_ttl must be a number of seconds >= 2, not {ttl!r}")
    return int(ttl)


def _check_part(value: str, what: str) -> str:
    if not value or "/" in value:
        raise ValueError(f"{what} must be non-empty and contain no '/', not {value!r}")
    return value


def nodes_prefix(settings: Settings) -> str:
    return f"{ROOT}/{_check_part(settings.cluster, 'cluster name')}/nodes/"


def node_key(settings: Settings, host: str, name: str) -> str:
    return f"{nodes_prefix(settings)}{_check_part(host, 'host')}/{_check_part(name, 'node name')}"


def members_prefix(settings: Settings, bolt: str) -> str:
    return f"{ROOT}/{_check_part(settings.cluster, 'cluster name')}/members/{_check_part(bolt, 'bolt name')}/"


def _parse_endpoint(value: str) -> tuple[str, str, int]:
    """'host:port' (optionally with http:// or https://) -> (protocol, host, port)."""
    protocol, rest = "http", value.strip()
    if "://" in rest:
        protocol, rest = rest.split("://", 1)
        if protocol not in ("http", "https"):
            raise ConfigError(redact(f"etcd endpoint {value!r}: scheme must be http or https"))
    if "@" in rest:
        raise ConfigError(redact(f"etcd endpoint {value!r}: no user or password here (the etcd client, etcd3gw, "
                                 "has no etcd authentication): use https:// with [cluster] ca_cert, and "
                                 "cert_cert/cert_key for a client certificate"))
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"etcd endpoint must be 'host:port', not {value!r}")
    return protocol, host.strip("[]"), int(port)


def _tls(settings: Settings, protocol: str) -> dict[str, str | None]:
    """etcd3gw's TLS arguments from [cluster] ca_cert (the CA that signed etcd's certificate;
    default: the system's) and cert_cert/cert_key (a client certificate, for etcd's
    --client-cert-auth); they need an https:// etcd endpoint."""
    tls = {"ca_cert": _options(settings).get("ca_cert"), "cert_cert": _options(settings).get("cert_cert"),
           "cert_key": _options(settings).get("cert_key")}
    for key, value in tls.items():
        if value is not None and not (isinstance(value, str) and value):
            raise ConfigError(f"[cluster] {key} must be a file path, not {value!r}")
    if (tls["cert_cert"] is None) != (tls["cert_key"] is None):
        raise ConfigError("[cluster] cert_cert and cert_key go together (a client certificate and its key)")
    if protocol != "https" and any(v is not None for v in tls.values()):
        raise ConfigError(f"[cluster] {', '.join(k for k, v in tls.items() if v is not None)}: TLS needs "
                          f"etcd = \"https://host:port\", not {settings.etcd!r}")
    return tls


def _client(settings: Settings, timeout: float) -> etcd3gw.Etcd3Client:
    protocol, host, port = _parse_endpoint(settings.etcd)
    api_path = _options(settings).get("api_path", DEFAULT_API_PATH)
    return etcd3gw.client(host=host, port=port, protocol=protocol, timeout=timeout, api_path=api_path,
                          **_tls(settings, protocol))


def _describe(exc: BaseException) -> str:
    detail = getattr(exc, "detail_text", None) or str(exc) or ""
    detail = " ".join(str(detail).split())
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


# -- the leased key loop --------------------------------------------------------------
class _LeasedKey:
    """One key bound to one lease, kept alive by a greenlet that survives etcd outages.

    Subclasses provide `_value()` (the bytes to write) and may override `_tick()`
    (called after every successful keep-alive) and `_on_unreachable()`.
    """

    #: First retry delay after a failure; doubles up to `max_backoff`.
    min_backoff: float = 0.25
    #: Upper bound of the retry delay (also bounded by the refresh interval, at least 1 s).
    max_backoff: float = 5.0

    def __init__(self, settings: Settings, key: str, clock: Callable[[], float] = time.time) -> None:
        if not settings.etcd:
            raise ClusterUnavailable("no etcd configured (set etcd = \"host:port\" under [analytics] or ANALYTICS_ETCD)")
        _parse_endpoint(settings.etcd)  # fail fast on a malformed value
        self.settings = settings
        self.key = key
        self.clock = clock
        self.ttl = lease_ttl(settings)
        #: Seconds between keep-alives and rewrites of the value (about TTL/3).
        self.interval = self.ttl / 3.0
        #: Seconds between loop iterations (subclasses may want more often than `interval`).
        self.period = self.interval
        #: HTTP timeout of one etcd call: short enough that retries fit in one TTL.
        self.request_timeout = float(_options(settings).get("request_timeout", max(1.0, min(3.0, self.ttl / 3.0))))
        self._backoff_cap = max(1.0, min(self.max_backoff, self.interval))
        self._etcd = _client(settings, self.request_timeout)
        self._lease: Any = None
        self._next_refresh = 0.0
        self._connected = gevent.event.Event()
        self._stopping = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._outage_since: float | None = None
        #: Registrations so far (1 at start, +1 after each outage).
        self.registrations = 0
        #: Last error while disconnected (None when connected).
        self.last_error: str | None = None

    # -- public -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while our key is written under a live lease (as far as we last saw)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block this greenlet until registered (True) or `timeout` passes (False)."""
        return bool(self._connected.wait(timeout))

    def start(self) -> "_LeasedKey":
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop, revoke the lease and delete the key (best effort, never raises)."""
        self._stopping.set()
        if self._greenlet is not None:
            self._greenlet.join(timeout if timeout is not None else self.request_timeout + 1.0)
            self._greenlet.kill(block=True, timeout=1.0)
            self._greenlet = None
        self._connected.clear()
        lease, self._lease = self._lease, None
        try:
            if lease is not None:
                lease.revoke()
            self._etcd.delete(self.key.encode())
        except _ETCD_ERRORS as exc:
            log.debug("cluster: cleanup of %s failed (%s); the lease will expire", self.key, _describe(exc))
        finally:
            self._etcd.session.close()

    def __enter__(self) -> "_LeasedKey":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- hooks --------------------------------------------------------------------
    def _value(self) -> bytes:
        raise NotImplementedError

    def _tick(self) -> None:
        """Called after each successful iteration, while connected."""

    def _on_unreachable(self, exc: BaseException) -> None:
        """Called after each failed iteration."""

    # -- loop ---------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            try:
                self._iteration()
            except Exception as exc:  # never let anything escape the greenlet: etcd is optional
                self._failed(exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self._backoff_cap)
                continue
            backoff = self.min_backoff
            self._stopping.wait(self.period)

    def _iteration(self) -> None:
        now = time.monotonic()
        if self._lease is None:
            self._register()
        elif now >= self._next_refresh:
            if self._lease.refresh() <= 0:
                raise _LeaseLost(f"lease {self._lease.id:x} expired")
            self._etcd.put(self.key.encode(), self._value(), lease=self._lease)
            self._next_refresh = now + self.interval
        self._tick()

    def _register(self) -> None:
        lease = self._etcd.lease(self.ttl)
        try:
            self._etcd.put(self.key.encode(), self._value(), lease=lease)
        except BaseException:
            self._revoke_quietly(lease)
            raise
        self._lease = lease
        self._next_refresh = time.monotonic() + self.interval
        self.registrations += 1
        self.last_error = None
        self._connected.set()
        if self._outage_since is not None:
            log.warning("cluster: etcd %s is back; %s registered again after %.1f s", self.settings.etcd,
                        self.key, time.monotonic() - self._outage_since)
            self._outage_since = None
        else:
            log.info("cluster: registered %s (lease %x, ttl %d s)", self.key, lease.id, self.ttl)

    def _failed(self, exc: BaseException) -> None:
        self.last_error = _describe(exc)
        self._connected.clear()
        lost, self._lease = self._lease, None
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("cluster: etcd %s unreachable or lease lost (%s); %s is disconnected, retrying",
                        self.settings.etcd, self.last_error, self.key)
        else:
            log.debug("cluster: still disconnected from etcd %s: %s", self.settings.etcd, self.last_error)
        if lost is not None and not isinstance(exc, _LeaseLost):
            # Re-registration takes a new lease; an old one that survived an etcd restart
            # would otherwise linger until its TTL. Worth one quick try, no more.
            self._revoke_quietly(lost)
        try:
            self._on_unreachable(exc)
        except Exception:
            log.exception("cluster: %s: handler for lost etcd failed", self.key)

    def _revoke_quietly(self, lease: Any) -> None:
        try:
            lease.revoke()
        except _ETCD_ERRORS:
            pass


# -- node registration ----------------------------------------------------------------
class NodeRegistration(_LeasedKey):
    """`nodes/<host>/<name>` for one running component, rewritten every ~TTL/3 from `stats()`.

    `stats()` returns ``{"health": {"state": "ok"|"degraded"|"failing", "reason": str},
    "counters": {...}}`` (either part optional); if it raises, the node reports
    itself degraded with the error as reason.
    """

    def __init__(self, settings: Settings, name: str, role: str, endpoints: Mapping[str, str] | None = None,
                 stats: Callable[[], Mapping[str, Any]] | None = None, host: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.role = role
        self.host = host or socket.gethostname()
        super().__init__(settings, node_key(settings, self.host, name), clock=clock)
        self.endpoints = dict(endpoints or {})
        self.stats = stats
        self.pid = os.getpid()
        self.started = round(clock(), 3)
        #: The document last written (or about to be written).
        self.document: dict[str, Any] = {}

    def _value(self) -> bytes:
        doc: dict[str, Any] = {
            "name": self.name, "role": self.role, "host": self.host, "pid": self.pid,
            "endpoints": self.endpoints, "started": self.started, "updated": round(self.clock(), 3),
            "health": {"state": "ok", "reason": ""}, "counters": {},
        }
        if self.stats is not None:
            try:
                extra = dict(self.stats() or {})
            except Exception as exc:
                log.warning("cluster: stats() of %s failed: %s", self.name, _describe(exc), exc_info=True)
                extra = {"health": {"state": "degraded", "reason": f"stats() failed: {_describe(exc)}"}}
            for k, v in extra.items():
                if k == "health":
                    doc["health"] = _health(v)
                elif k == "counters":
                    doc["counters"] = dict(v)
                elif k not in ("name", "role", "host", "pid", "endpoints", "started", "updated"):
                    doc[k] = v
        self.document = doc
        return _dumps(doc)


def _health(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {"state": "degraded", "reason": f"malformed health {value!r}"}
    state = value.get("state", "ok")
    reason = str(value.get("reason", "") or "")
    if state not in HEALTH_STATES:
        return {"state": "degraded", "reason": f"unknown health state {state!r}" + (f": {reason}" if reason else "")}
    return {"state": state, "reason": reason}


def start_node(settings: Settings, name: str, role: str, endpoints: Mapping[str, str] | None = None,
               stats: Callable[[], Mapping[str, Any]] | None = None,
               host: str | None = None) -> NodeRegistration | None:
    """Register this process as node `name` and keep it registered; None when no etcd is configured.

    Returns at once: registration happens in a greenlet (`wait_connected(timeout)`
    to wait for it). `stop()` deregisters.
    """
    if not settings.etcd:
        return None
    return NodeRegistration(settings, name, role, endpoints, stats, host=host).start()  # type: ignore[return-value]


def publish_broker(settings: Settings, endpoints: Mapping[str, str],
                   stats: Callable[[], Mapping[str, Any]] | None = None,
                   name: str = "broker") -> NodeRegistration | None:
    """The broker's own `start_node`: role "broker", endpoints {"receiver", "sender"}."""
    missing = {"receiver", "sender"} - set(endpoints)
    if missing:
        raise ValueError(f"broker endpoints need 'receiver' and 'sender', missing {sorted(missing)} in {dict(endpoints)!r}")
    return start_node(settings, name, "broker", {k: endpoints[k] for k in ("receiver", "sender")}, stats)


# -- reading ----------------------------------------------------------------------------
def list_nodes(settings: Settings, now: float | None = None, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Every registered node, sorted by (host, name), each with ``key``, ``age`` (seconds
    since started) and ``updated_age`` (seconds since its last rewrite).

    Raises ClusterUnavailable when etcd is not configured or cannot be reached.
    """
    if not settings.etcd:
        raise ClusterUnavailable("no etcd configured (set etcd = \"host:port\" under [analytics] or ANALYTICS_ETCD)")
    prefix = nodes_prefix(settings)
    client = _client(settings, timeout)
    try:
        rows = client.get_prefix(prefix.encode())
    except _ETCD_ERRORS as exc:
        raise ClusterUnavailable(f"etcd at {settings.etcd} cannot be reached: {_describe(exc)}") from None
    finally:
        client.session.close()
    now = time.time() if now is None else now
    nodes = []
    for value, meta in rows:
        key = meta["key"].decode("utf-8", "replace")
        try:
            doc = json.loads(value)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            host, _, name = key[len(prefix):].partition("/")
            doc = {"name": name, "host": host, "role": "?",
                   "health": {"state": "failing", "reason": f"unreadable registration: {exc}"}}
        doc["key"] = key
        doc["age"] = max(0.0, round(now - float(doc.get("started", now)), 3))
        doc["updated_age"] = max(0.0, round(now - float(doc.get("updated", now)), 3))
        nodes.append(doc)
    nodes.sort(key=lambda d: (str(d.get("host", "")), str(d.get("name", ""))))
    return nodes


def discover_broker(settings: Settings, timeout: float = 10.0, poll: float = 0.25) -> dict[str, str]:
    """Endpoints {"receiver", "sender"} of a live broker node (the most recently started
    one if several), waiting up to `timeout` seconds for one to register."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            brokers = [n for n in list_nodes(settings) if n.get("role") == "broker"
                       and n.get("health", {}).get("state") != "failing"
                       and {"receiver", "sender"} <= set(n.get("endpoints") or {})]
            if brokers:
                best = max(brokers, key=lambda n: float(n.get("started", 0)))
                return {k: str(v) for k, v in best["endpoints"].items()}
            last_error = ""
        except ClusterUnavailable as exc:
            last_error = str(exc)
            if not settings.etcd:
                raise
        if time.monotonic() >= deadline:
            where = f"under {nodes_prefix(settings)} in etcd {settings.etcd}"
            raise BrokerNotFound(f"no live broker registered {where} after {timeout:g} s"
                                 + (f" ({last_error})" if last_error else "; is the broker running in this cluster?"))
        gevent.sleep(min(poll, max(0.0, deadline - time.monotonic())))


# -- status ------------------------------------------------------------------------------
_COLUMNS = ("NODE", "HOST", "ROLE", "HEALTH", "RECEIVED", "EMITTED", "REJECTED", "LAG", "AGE")


def _counter(node: Mapping[str, Any], name: str) -> int | float | None:
    """A counter as a number: per-topic dicts are summed; absent is None."""
    value = (node.get("counters") or {}).get(name)
    if isinstance(value, Mapping):
        nums = [v for v in value.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return sum(nums) if nums else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _fmt_num(value: int | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}"
    return str(int(value))


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def render_status(nodes: list[dict[str, Any]], expected: Iterable[str] | None = None,
                  as_json: bool = False) -> tuple[str, int]:
    """The status report of `nodes` (from `list_nodes`) and its exit code.

    Exit code 0 when every node is ok or degraded and every `expected` name is
    present; 1 when a node is failing or an expected name is missing. (2, etcd
    unreachable, is the caller's: see `status`.)
    """
    present = {str(n.get("name")) for n in nodes}
    missing = sorted(set(expected or ()) - present)
    failing = sorted(str(n.get("name")) for n in nodes if _state(n) == "failing")
    code = EXIT_PROBLEM if (missing or failing) else EXIT_OK
    if as_json:
        doc = {"ok": code == EXIT_OK, "nodes": nodes, "missing": missing, "failing": failing}
        return json.dumps(doc, sort_keys=True, indent=2, default=str), code
    rows = []
    for n in nodes:
        health = n.get("health") or {}
        state, reason = _state(n), str(health.get("reason") or "")
        cell = state if not reason else f"{state}: {reason[:40]}"
        rows.append((str(n.get("name", "?")), str(n.get("host", "?")), str(n.get("role", "?")), cell,
                     _fmt_num(_counter(n, "received")), _fmt_num(_counter(n, "emitted")),
                     _fmt_num(_counter(n, "rejected")), _fmt_num(_counter(n, "lag")), _fmt_age(n.get("age"))))
    for name in missing:
        rows.append((name, "-", "-", "MISSING", "-", "-", "-", "-", "-"))
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(_COLUMNS)]
    numeric = {4, 5, 6, 7, 8}

    def line(cells: Iterable[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(_COLUMNS), *(line(r) for r in rows)]
    counts = {s: sum(1 for n in nodes if _state(n) == s) for s in HEALTH_STATES}
    summary = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: " + ", ".join(f"{counts[s]} {s}" for s in HEALTH_STATES)
    if missing:
        summary += f"; missing: {', '.join(missing)}"
    out.append(summary)
    return "\n".join(out), code


def _state(node: Mapping[str, Any]) -> str:
    state = (node.get("health") or {}).get("state", "ok")
    return state if state in HEALTH_STATES else "degraded"


def status(settings: Settings, expected: Iterable[str] | None = None, as_json: bool = False) -> tuple[str, int]:
    """`list_nodes` + `render_status`; etcd unreachable gives (one-line error, 2)."""
    try:
        nodes = list_nodes(settings)
    except ClusterUnavailable as exc:
        msg = str(exc)
        return (json.dumps({"ok": False, "error": msg}) if as_json else msg), EXIT_UNREACHABLE
    return render_status(nodes, expected, as_json)


# -- partitions ---------------------------------------------------------------------------
def assign_partitions(instances: Iterable[str], partitions: int) -> dict[str, frozenset[int]]:
    """Partition p goes to sorted(instances)[p % n]: deterministic, balanced (sizes differ
    by at most one), every partition owned by exactly one instance."""
    ids = sorted(set(instances))
    if not ids:
        raise ValueError("at least one instance is needed to assign partitions")
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, not {partitions}")
    n = len(ids)
    return {inst: frozenset(range(k, partitions, n)) for k, inst in enumerate(ids)}


def partitions_for(instance: str, instances: Iterable[str], partitions: int) -> frozenset[int]:
    """The partitions `instance` owns when `instances` (it included or not) are live."""
    return assign_partitions(set(instances) | {instance}, partitions)[instance]


class PartitionAssigner(_LeasedKey):
    """Divides `partitions` between the live instances of one bolt.

    Registers ``members/<bolt>/<instance>`` under its own lease and polls the
    members every `poll_interval` seconds (a poll, not a watch: one short request,
    nothing to resynchronise after an outage). `on_change(owned)` is called with
    the new set at the first assignment and whenever it changes. An instance that
    dies stops refreshing its lease; once the lease expires (one TTL) the next poll
    of every survivor gives its partitions away.

    While etcd is unreachable the last assignment is kept (never the data path);
    if etcd was never reached, the instance owns every partition. Overlap is safe:
    the store deduplicates records by id and derives distinct counts from unique
    membership rows (docs/cluster.md).
    """

    #: Seconds between polls of the member list.
    poll_interval: float = 1.0

    def __init__(self, settings: Settings, bolt: str, instance: str, partitions: int,
                 on_change: Callable[[set[int]], None], clock: Callable[[], float] = time.time) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, not {partitions}")
        self.bolt = bolt
        self.instance = _check_part(instance, "instance id")
        self.partitions = partitions
        self.on_change = on_change
        self.owned: frozenset[int] | None = None
        #: Live instance ids at the last successful poll.
        self.members: list[str] = []
        self._standalone = not settings.etcd
        self._assigned = gevent.event.Event()
        if self._standalone:
            self.settings, self.key, self.clock = settings, "", clock
            self._greenlet = None
            return
        super().__init__(settings, members_prefix(settings, bolt) + instance, clock=clock)
        self.period = min(self.interval, self.poll_interval)
        self._started = round(clock(), 3)

    @property
    def connected(self) -> bool:
        return False if self._standalone else super().connected

    def start(self) -> "PartitionAssigner":
        if self._standalone:
            self._set_owned(frozenset(range(self.partitions)), [self.instance])
            return self
        super().start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        if not self._standalone:
            super().stop(timeout)

    def wait_assigned(self, timeout: float | None = None) -> bool:
        """Block this greenlet until the first assignment was made (True) or timeout (False)."""
        return bool(self._assigned.wait(timeout))

    def _value(self) -> bytes:
        return _dumps({"instance": self.instance, "bolt": self.bolt, "host": socket.gethostname(),
                       "pid": os.getpid(), "started": self._started})

    def _tick(self) -> None:
        prefix = members_prefix(self.settings, self.bolt)
        rows = self._etcd.get_prefix(prefix.encode())
        live = sorted({meta["key"].decode("utf-8", "replace")[len(prefix):] for _, meta in rows} | {self.instance})
        self._set_owned(partitions_for(self.instance, live, self.partitions), live)

    def _on_unreachable(self, exc: BaseException) -> None:
        if self.owned is None:
            log.warning("cluster: etcd unreachable before the first assignment; %s/%s owns all %d partitions "
                        "until it is back (safe: writes are idempotent)", self.bolt, self.instance, self.partitions)
            self._set_owned(frozenset(range(self.partitions)), [self.instance])

    def _set_owned(self, owned: frozenset[int], members: list[str]) -> None:
        self.members = members
        if owned == self.owned:
            return
        self.owned = owned
        log.info("cluster: %s/%s owns partitions %s of %d (live: %s)", self.bolt, self.instance,
                 sorted(owned), self.partitions, ", ".join(members))
        self._assigned.set()
        try:
            self.on_change(set(owned))
        except Exception:
            log.exception("cluster: on_change of %s/%s failed", self.bolt, self.instance)
