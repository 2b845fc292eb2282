"""ZeroMQ transport: the only module (with broker.py) that touches sockets.

Frames (multipart, one batch of one topic and one partition per message):

    [b"<topic>\\x00<ppp>", b"D|<count>|<producer>", <orjson [[id, ts, body], ...]>]   data
    [b"<topic>\\x00*",     b"B|0|<producer>",       <orjson {"sent": n, ...}>]       barrier
    [b"_ctl\\x00*",        b"C|0|<producer>",       <orjson {...}>]                  report
    [b"<topic>\\x00*",     b"K|0|<producer>",       <orjson {"inc", "seq", ...}>]    checkpoint barrier

Subscribing to b"<topic>\\x00" takes every partition and the barriers of a topic;
an instance that owns some partitions subscribes b"<topic>\\x00<ppp>" for each and
b"<topic>\\x00*". A bolt subscribes its data topics first and a readiness marker
b"\\x02ready\\x00<name>" last: subscriptions on one connection arrive in order,
so when the broker sees the marker it knows the bolt's topics are in place.

The bolts of one process share one SUB socket (SharedSubscriber, like a Storm
worker's receive thread): a frame is received once and handed to every local
bolt whose topics and partitions it matches, and its batch is decoded once
(Message.decoded) for all of them.

Security (`[broker] curve_keys`, docs/cluster.md): every socket is created through
`secure()`, which makes the broker's receiver and sender CURVE servers and every other
socket a CURVE client when its endpoint is tcp; inproc never leaves the process and is
left alone. The keys travel with the context (`new_context(settings)`), so no component
handles them. Without keys the broker binds only loopback, unless `[broker] insecure`.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import gevent
import gevent.queue
import zmq.green as zmq
from zmq.auth import create_certificates, load_certificate
from zmq.auth.base import Authenticator

from analytics.codec import encode_obj
from analytics.config import BrokerSettings, ConfigError, Settings

__all__ = ["Message", "Publisher", "Subscriber", "SharedSubscriber", "Inbox", "topic_key", "topic_matches", "subscription_prefixes",
           "READY_PREFIX", "CTL_TOPIC", "new_context", "parse", "parse_head", "Malformed", "DATA", "BARRIER", "REPORT", "CHECKPOINT",
           "Context", "CurveKeys", "secure", "check_bind", "check_broker", "is_loopback", "create_keys"]

log = logging.getLogger(__name__)

READY_PREFIX = b"\x02ready\x00"
CTL_TOPIC = "_ctl"
DATA, BARRIER, REPORT, CHECKPOINT = b"D", b"B", b"C", b"K"
KINDS = frozenset((DATA, BARRIER, REPORT, CHECKPOINT))
#: Longest topic and producer names a frame may carry.
MAX_NAME = 200


class Malformed(ValueError):
    """A received message is not one of ours (a foreign peer, a truncated or forged frame)."""


#: Key pair names in a curve_keys directory: <name>.key (public) and <name>.key_secret.
BROKER_KEYS, CLIENT_KEYS = "broker", "client"


class CurveKeys:
    """The key files of a curve_keys directory, read when a socket needs them.

    A client host holds broker.key, client.key and client.key_secret; the broker host
    holds broker.key_secret and the public key (*.key) of every client it accepts. Each
    side reads only its own files, so a host lacks nothing it does not use.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._server: tuple[bytes, bytes] | None = None
        self._client: tuple[bytes, bytes, bytes] | None = None

    def _load(self, name: str, secret: bool) -> tuple[bytes, bytes | None]:
        path = self.directory / (f"{name}.key_secret" if secret else f"{name}.key")
        try:
            public, secret_key = load_certificate(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[broker] curve_keys: cannot read {path} ({exc}); `analytics keys "
                              f"{self.directory}` writes the keys, docs/cluster.md says which host needs which") from None
        if secret and not secret_key:
            raise ConfigError(f"[broker] curve_keys: {path} holds no secret key")
        return public, secret_key

    def server(self) -> tuple[bytes, bytes]:
        """(public, secret) of the broker: broker.key_secret."""
        if self._server is None:
            public, secret = self._load(BROKER_KEYS, secret=True)
            self._server = (public, secret or b"")
        return self._server

    def client(self) -> tuple[bytes, bytes, bytes]:
        """(broker's public, client's public, client's secret): broker.key and client.key_secret."""
        if self._client is None:
            broker, _ = self._load(BROKER_KEYS, secret=False)
            public, secret = self._load(CLIENT_KEYS, secret=True)
            self._client = (broker, public, secret or b"")
        return self._client


class Context(zmq.Context):
    """A gevent-cooperative ZeroMQ context that knows how its sockets are secured.

    `broker` is the [broker] table (curve_keys, insecure) that secure() reads; while the
    broker serves CURVE, the context also runs its ZAP handler, stopped by term()/destroy().
    """

    broker: BrokerSettings | None = None
    keys: CurveKeys | None = None
    _zap: "ZapHandler | None" = None

    @property
    def refused(self) -> int:
        """CURVE clients the ZAP handler refused (0 without CURVE)."""
        return self._zap.refused if self._zap is not None else 0

    def zap(self) -> None:
        """Start the ZAP handler of this context (once), with the public keys of curve_keys."""
        if self._zap is None and self.keys is not None:
            self._zap = ZapHandler(self, self.keys.directory)

    def _stop_zap(self) -> None:
        zap, self._zap = self._zap, None
        if zap is not None:
            zap.stop()

    def term(self) -> None:
        self._stop_zap()
        super().term()

    def destroy(self, linger: int | None = None) -> None:
        self._stop_zap()
        super().destroy(linger)


def new_context(settings: Settings | None = None) -> Context:
    """A gevent-cooperative ZeroMQ context whose tcp sockets follow `settings.broker`
    (CURVE with curve_keys; None: plain, loopback binds only)."""
    ctx = Context()
    if settings is not None:
        ctx.broker = settings.broker
        if settings.broker.curve_keys:
            ctx.keys = CurveKeys(settings.broker.curve_keys)
    return ctx


def _host(endpoint: str) -> str:
    """The host of a tcp:// endpoint ('*' for every interface), without brackets."""
    rest = endpoint.split("://", 1)[-1]
    host = rest.rpartition(":")[0] if ":" in rest else rest
    return host.split(";")[-1].strip("[]")


def is_loopback(endpoint: str) -> bool:
    """Whether a tcp endpoint binds only this machine: 127.0.0.0/8, ::1 or localhost."""
    host = _host(endpoint)
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*', an interface or a host name: reachable from elsewhere
        return False


def check_bind(endpoint: str, broker: BrokerSettings) -> None:
    """Refuse a broker endpoint that anyone on the network could push forged tuples to:
    a non-loopback tcp address without curve_keys, unless insecure = true."""
    if not endpoint.startswith("tcp://") or broker.curve_keys or is_loopback(endpoint):
        return
    if broker.insecure:
        log.warning("broker: binding %s in the clear ([broker] insecure = true): whoever reaches it can push "
                    "tuples", endpoint)
    else:
        raise ConfigError(f"[broker] refusing to bind {endpoint} in the clear: anyone who reaches it can push "
                          f"tuples; set curve_keys (`analytics keys DIR`, docs/cluster.md), bind 127.0.0.1, "
                          f"or set insecure = true on a network you trust")


def check_broker(broker: BrokerSettings) -> None:
    """check_bind for both broker endpoints (before anything is started)."""
    for endpoint in (broker.receiver, broker.sender):
        check_bind(endpoint, broker)


def secure(sock: zmq.Socket, endpoint: str, *, server: bool) -> None:
    """Set up `sock` before it binds (server: the broker's) or connects to `endpoint`.

    The one place sockets are secured: with curve_keys, a tcp server is a CURVE server
    whose clients the context's ZAP handler checks (started here, before the bind: libzmq
    lets every client in while no handler is bound), a tcp client a CURVE client. inproc
    is left alone. Without keys a server may bind only loopback (check_bind).
    """
    if not endpoint.startswith("tcp://"):
        return
    ctx = sock.context
    broker = getattr(ctx, "broker", None) or BrokerSettings()
    keys: CurveKeys | None = getattr(ctx, "keys", None)
    if keys is None:
        if server:
            check_bind(endpoint, broker)
        return
    if server:
        public, secret = keys.server()
        ctx.zap()
        # No ZAP domain: libzmq asks the handler about every CURVE client all the same, and
        # pyzmq's Authenticator files an empty domain under "*", where configure_curve put the keys.
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    else:
        server_key, public, secret = keys.client()
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)


class _CurveAuthenticator(Authenticator):
    """pyzmq's ZAP rules, counting and logging the clients it refuses."""

    refused = 0

    def _send_zap_reply(self, request_id: bytes, status_code: bytes, status_text: bytes,
                        user_id: str = "anonymous") -> None:
        if status_code != b"200":
            self.refused += 1
            if self.refused <= 10 or self.refused % 1000 == 0:
                log.warning("broker: refused a CURVE client (#%d): %s (its public key is not among the *.key "
                            "files of curve_keys)", self.refused, status_text.decode(errors="replace"))
        super()._send_zap_reply(request_id, status_code, status_text, user_id)


class ZapHandler:
    """The broker's ZAP handler: pyzmq's Authenticator with configure_curve(domain="*",
    location=<curve_keys>), so a client is let in only if its public key is one of the
    directory's *.key files (read once: a new host's key needs a broker restart).

    It answers from an OS thread of gevent's pool, on a plain socket. pyzmq's
    ThreadAuthenticator does not do here: under monkey patching its thread is a greenlet
    whose asyncio loop never answers, and a greenlet answering on a green socket waits
    while another greenlet's green poll spins. The socket is bound on creation (before any
    server socket binds) and closed only when the context ends.
    """

    #: Milliseconds between looks at the stop flag.
    poll_ms = 100

    def __init__(self, ctx: zmq.Context, directory: Path) -> None:
        self.auth = _CurveAuthenticator(ctx, log=logging.getLogger("analytics.transport.zap"))
        self.auth.start()  # binds inproc://zeromq.zap.01 with a plain socket
        self.auth.configure_curve(domain="*", location=str(directory))
        allowed = len(self.auth.certs.get("*", {}))
        log.log(logging.INFO if allowed else logging.WARNING, "broker: CURVE on, %d public key%s (*.key) allowed "
                "from %s", allowed, "" if allowed == 1 else "s", directory)
        self._running = True
        self._done = gevent.get_hub().threadpool.spawn(self._serve)

    @property
    def refused(self) -> int:
        """Clients refused so far (a key not in the directory)."""
        return self.auth.refused

    def _serve(self) -> None:
        sock = self.auth.zap_socket
        try:
            while self._running:
                if not sock.poll(self.poll_ms):
                    continue
                request = sock.recv_multipart()
                try:
                    # A coroutine that awaits nothing without a credentials callback: one step runs it.
                    self.auth.handle_zap_message(request).send(None)
                except StopIteration:
                    pass
                except Exception:  # never leave the next handshakes unanswered because of one request
                    log.exception("broker: a ZAP request failed")
        finally:
            self.auth.stop()

    def stop(self, timeout: float = 5.0) -> None:
        self._running = False
        self._done.get(timeout=timeout)


def create_keys(directory: str | os.PathLike, *, force: bool = False, client_only: bool = False) -> list[Path]:
    """Write CURVE key pairs into `directory`: broker.key/.key_secret and client.key/.key_secret
    (only the client's with `client_only`); secret files mode 0600. Existing files are kept
    unless `force` (new keys lock out every host that holds the old ones)."""
    directory = Path(directory)
    names = [CLIENT_KEYS] if client_only else [BROKER_KEYS, CLIENT_KEYS]
    files = [directory / f"{n}{ext}" for n in names for ext in (".key", ".key_secret")]
    existing = [f.name for f in files if f.exists()]
    if existing and not force:
        raise FileExistsError(f"{directory} already holds {', '.join(existing)}: --force replaces them (every "
                              "host then needs the new keys)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)  # no moment at which a secret file is readable by others
    try:
        for name in names:
            public, secret = create_certificates(directory, name)
            os.chmod(secret, 0o600)
            os.chmod(public, 0o644)
    finally:
        os.umask(old)
    return files


def topic_key(topic: str, partition: int | None) -> bytes:
    """The first frame of a message: topic and partition ('*' for barriers and reports)."""
    suffix = "*" if partition is None else f"{partition:03d}"
    return f"{topic}\x00{suffix}".encode()


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether a subscription pattern ('a.b' exact, 'a.*' prefix) covers a topic."""
    if pattern.endswith("*"):
        return topic.startswith(pattern[:-1])
    return pattern == topic


def wants(patterns: Sequence[str], partitions: set[int] | None, topic: str, partition: str) -> bool:
    """Whether a subscriber of `patterns` owning `partitions` (None: all) takes this frame.

    The same rule as its ZeroMQ prefixes (subscription_prefixes): barriers ('*') always,
    prefix patterns every partition.
    """
    for pattern in patterns:
        if pattern.endswith("*"):
            if topic.startswith(pattern[:-1]):
                return True
        elif pattern == topic and (partitions is None or partition == "*" or int(partition) in partitions):
            return True
    return False


def subscription_prefixes(pattern: str, partitions: Iterable[int] | None) -> list[bytes]:
    """The ZeroMQ subscription prefixes for a pattern, all partitions or only some."""
    if pattern.endswith("*"):
        return [pattern[:-1].encode()]  # prefix patterns take every partition
    base = pattern.encode() + b"\x00"
    if partitions is None:
        return [base]
    return [base + b"*"] + [base + f"{p:03d}".encode() for p in sorted(partitions)]


@dataclass(slots=True)
class Message:
    kind: bytes          # DATA, BARRIER or REPORT
    topic: str
    partition: str       # '000'... or '*'
    producer: str
    count: int
    payload: bytes
    #: The decoded batch, filled by the first bolt that decodes it and shared with the others
    #: of the process (bolts never modify a tuple).
    decoded: list | None = None


def parse_head(key: bytes, header: bytes) -> tuple[bytes, str, str, str, int]:
    """(kind, topic, partition, producer, count) of a message's first two frames; Malformed if foreign.

    Checked once, for the broker and every subscriber: a topic key with its partition
    ('000'... or '*'), a header `kind|count|producer` of a known kind with a count (0 but
    for data). The broker looks no further; payloads are decoded by their reader.
    """
    topic, sep, part = key.partition(b"\x00")
    if not sep or not topic or len(topic) > MAX_NAME or not (part == b"*" or (len(part) == 3 and part.isdigit())):
        raise Malformed(f"bad topic key {key[:80]!r}")
    fields = header.split(b"|", 2)
    if len(fields) != 3:
        raise Malformed(f"bad header {header[:80]!r}")
    kind, count, producer = fields
    if kind not in KINDS or not count.isdigit() or len(count) > 9 or not producer or len(producer) > MAX_NAME:
        raise Malformed(f"bad header {header[:80]!r}")
    if (kind == DATA) == (part == b"*") or (kind != DATA and count != b"0"):
        raise Malformed(f"header {header[:80]!r} does not fit topic key {key[:80]!r}")
    try:
        return kind, topic.decode(), part.decode(), producer.decode(), int(count)
    except UnicodeDecodeError as exc:
        raise Malformed(f"names are not UTF-8: {exc}") from None


def parse(frames: Sequence[bytes]) -> Message:
    """Split a received multipart message; raises Malformed (a ValueError) on anything foreign."""
    if len(frames) != 3:
        raise Malformed(f"expected 3 frames, got {len(frames)}")
    kind, topic, part, producer, count = parse_head(bytes(frames[0]), bytes(frames[1]))
    return Message(kind, topic, part, producer, count, bytes(frames[2]))


class Publisher:
    """PUSH side of a component: batches tuples per (topic, partition) and sends them.

    A full pipe blocks `send` (cooperatively), which is how backpressure reaches
    a spout. `before_send` runs before any frame leaves (spouts flush their disk
    log there: a record is on disk before it is published).
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, producer: str, *, batch_size: int = 200,
                 linger_ms: int = 20, hwm: int = 1000,
                 before_send: Callable[[], None] | None = None, immediate: bool = False) -> None:
        self.producer = producer
        self.batch_size = batch_size
        self.linger = linger_ms / 1000.0
        self.before_send = before_send
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        # close() waits this long for queued frames to be delivered; the drain protocol,
        # not the linger, is what confirms delivery.
        self.sock.setsockopt(zmq.LINGER, 10_000)
        # By default frames queue in the pipe while the broker is away (a restarting broker
        # gets them); `immediate` queues only to a live connection, which is what makes
        # wait_connected() mean "a broker is there".
        if immediate:
            self.sock.setsockopt(zmq.IMMEDIATE, 1)
        secure(self.sock, endpoint, server=False)
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self._pending: dict[tuple[str, int], list[list[Any]]] = {}
        self._first_pending = 0.0
        self.sent: dict[str, int] = {}
        self.sent_parts: dict[str, dict[str, int]] = {}
        self.frames = 0
        #: This publisher's incarnation: checkpoint barriers say which run of a producer they close.
        self.inc = os.urandom(6).hex()
        #: Checkpoint barriers sent per topic (their `seq`: a gap in it is a lost barrier).
        self.checkpoints: dict[str, int] = {}

    def wait_connected(self, timeout: float) -> bool:
        """Whether a broker accepted the connection within `timeout` seconds (needs immediate=True)."""
        return bool(self.sock.poll(int(timeout * 1000), zmq.POLLOUT))

    def send(self, topic: str, id: str, ts: int, body: dict, partition: int = 0) -> None:
        """Queue one tuple; a full batch is sent at once."""
        key = (topic, partition)
        batch = self._pending.get(key)
        if batch is None:
            batch = self._pending[key] = []
            if len(self._pending) == 1:
                self._first_pending = time.monotonic()
        batch.append([id, ts, body])
        if len(batch) >= self.batch_size:
            del self._pending[key]
            self._send_batch(topic, partition, batch)

    def _send_batch(self, topic: str, partition: int, batch: list[list[Any]]) -> None:
        if self.before_send is not None:
            self.before_send()
        header = f"D|{len(batch)}|{self.producer}".encode()
        self.sock.send_multipart([topic_key(topic, partition), header, encode_obj(batch)])
        self.sent[topic] = self.sent.get(topic, 0) + len(batch)
        parts = self.sent_parts.setdefault(topic, {})
        parts[f"{partition:03d}"] = parts.get(f"{partition:03d}", 0) + len(batch)
        self.frames += 1

    def maybe_flush(self) -> None:
        """Send partial batches that have waited longer than the linger time."""
        if self._pending and time.monotonic() - self._first_pending >= self.linger:
            self.flush()

    def flush(self) -> None:
        """Send every partial batch now."""
        pending, self._pending = self._pending, {}
        for (topic, partition), batch in pending.items():
            self._send_batch(topic, partition, batch)

    def barrier(self, topics: Iterable[str], info: dict[str, Any] | None = None) -> None:
        """After flushing, tell subscribers of each topic that this producer's stream ended."""
        self.flush()
        for topic in topics:
            payload = {"sent": self.sent.get(topic, 0), "partitions": self.sent_parts.get(topic, {}),
                       **(info or {})}
            self.sock.send_multipart([topic_key(topic, None), f"B|0|{self.producer}".encode(),
                                      encode_obj(payload)])

    def checkpoint(self, topics: Iterable[str], origins: list[list[Any]]) -> None:
        """After flushing, a checkpoint barrier on each topic: what was sent before it, and the
        source checkpoints (origins: [spout, generation, epoch]) that everything before it covers.

        `sent` is cumulative for this incarnation (`inc`) per partition, and `seq` numbers the
        barriers of a topic, so a subscriber can tell that it got every tuple between two of them.
        """
        self.flush()
        for topic in topics:
            seq = self.checkpoints[topic] = self.checkpoints.get(topic, 0) + 1
            payload = {"inc": self.inc, "seq": seq, "partitions": self.sent_parts.get(topic, {}),
                       "origins": origins}
            self.sock.send_multipart([topic_key(topic, None), f"K|0|{self.producer}".encode(),
                                      encode_obj(payload)])
            self.frames += 1

    def report(self, payload: dict[str, Any]) -> None:
        """Send a control report (end of stream, drained, counters) to whoever listens on _ctl."""
        self.sock.send_multipart([topic_key(CTL_TOPIC, None), f"C|0|{self.producer}".encode(),
                                  encode_obj(payload)])

    def close(self, linger_ms: int | None = None) -> None:
        """Send what is pending and close; queued frames are delivered first (LINGER)."""
        self.flush()
        if linger_ms is not None:
            self.sock.setsockopt(zmq.LINGER, linger_ms)
        self.sock.close()


class Subscriber:
    """SUB side of a bolt: subscribes its topics, then announces it is ready."""

    def __init__(self, ctx: zmq.Context, endpoint: str, name: str, patterns: Sequence[str], *,
                 partitions: Iterable[int] | None = None, hwm: int = 1000) -> None:
        self.name = name
        self.patterns = list(patterns)
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        secure(self.sock, endpoint, server=False)
        self.sock.connect(endpoint)
        self._subs: set[bytes] = set()
        #: Malformed messages received and dropped; `on_malformed(frames, reason)` dead-letters them.
        self.malformed = 0
        self.on_malformed: Callable[[list[bytes], str], None] | None = None
        self.set_partitions(partitions)
        self.sock.setsockopt(zmq.SUBSCRIBE, READY_PREFIX + name.encode())

    def set_partitions(self, partitions: Iterable[int] | None) -> None:
        """(Re)subscribe to the given partitions of every topic (None: all)."""
        partitions = None if partitions is None else set(partitions)
        wanted = {p for pat in self.patterns for p in subscription_prefixes(pat, partitions)}
        for prefix in wanted - self._subs:
            self.sock.setsockopt(zmq.SUBSCRIBE, prefix)
        for prefix in self._subs - wanted:
            self.sock.setsockopt(zmq.UNSUBSCRIBE, prefix)
        self._subs = wanted

    def recv(self, timeout: float) -> Message | None:
        """The next message, or None after `timeout` seconds (or when what came was malformed)."""
        if not self.sock.poll(int(timeout * 1000), zmq.POLLIN):
            return None
        return self._parse(self.sock.recv_multipart())

    def recv_nowait(self) -> Message | None:
        try:
            return self._parse(self.sock.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return None

    def _parse(self, frames: list[bytes]) -> Message | None:
        try:
            return parse(frames)
        except Malformed as exc:
            self.malformed += 1
            log.error("%s: dropping a malformed message: %s", self.name, exc)
            if self.on_malformed is not None:
                self.on_malformed(frames, str(exc))
            return None

    def close(self) -> None:
        self.sock.close()


class Inbox:
    """One bolt's share of a SharedSubscriber: the frames it wants, in arrival order.

    The same interface as Subscriber. The queue is bounded: a bolt that does not read
    (a long flush, a store outage) stops the process's receive loop, the socket fills
    and the broker waits: backpressure as with a socket of its own.
    """

    def __init__(self, hub: "SharedSubscriber", name: str, patterns: Sequence[str],
                 partitions: set[int] | None, size: int) -> None:
        self.hub = hub
        self.name = name
        self.patterns = list(patterns)
        self.partitions = partitions
        self.queue: gevent.queue.Queue = gevent.queue.Queue(size)
        self.closed = False

    def set_partitions(self, partitions: Iterable[int] | None) -> None:
        """(Re)subscribe to the given partitions of every topic (None: all)."""
        self.partitions = None if partitions is None else set(partitions)
        self.hub._resubscribe()

    def recv(self, timeout: float) -> Message | None:
        """The next message, or None after `timeout` seconds."""
        try:
            return self.queue.get(timeout=timeout)
        except gevent.queue.Empty:
            return None

    def recv_nowait(self) -> Message | None:
        try:
            return self.queue.get_nowait()
        except gevent.queue.Empty:
            return None

    def close(self) -> None:
        self.hub._detach(self)


class SharedSubscriber:
    """One SUB socket for every bolt of a process: a frame is received once and dispatched.

    `subscribe(name, patterns)` gives each bolt an Inbox. The socket subscribes the
    union of the bolts' prefixes, then each bolt's readiness marker after its own
    topics (so the broker's readiness gate means the same as with one socket per bolt).
    A receive greenlet routes each frame to the inboxes that want it (`wants`); the
    socket closes when the last inbox does.
    """

    #: Frames an inbox holds before the receive loop waits for its bolt (at most the socket's hwm).
    inbox_frames = 64

    def __init__(self, ctx: zmq.Context, endpoint: str, *, hwm: int = 1000) -> None:
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        secure(self.sock, endpoint, server=False)
        self.sock.connect(endpoint)
        self._inboxes: list[Inbox] = []
        self._subs: set[bytes] = set()
        self._routes: dict[bytes, list[Inbox]] = {}
        self._greenlet: gevent.Greenlet | None = None
        self._inbox_size = max(1, min(hwm, self.inbox_frames))
        self.frames = 0
        #: Malformed messages received and dropped; `on_malformed(frames, reason)` dead-letters them.
        self.malformed = 0
        self.on_malformed: Callable[[list[bytes], str], None] | None = None

    def subscribe(self, name: str, patterns: Sequence[str], *, partitions: Iterable[int] | None = None) -> Inbox:
        """An inbox for bolt `name`; its topics are subscribed before its readiness marker."""
        if self.sock.closed:
            raise RuntimeError("shared subscriber is closed")
        inbox = Inbox(self, name, patterns, None if partitions is None else set(partitions), self._inbox_size)
        self._inboxes.append(inbox)
        self._resubscribe()
        self.sock.setsockopt(zmq.SUBSCRIBE, READY_PREFIX + name.encode())
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._receive)
        return inbox

    def _resubscribe(self) -> None:
        wanted = {p for box in self._inboxes for pat in box.patterns
                  for p in subscription_prefixes(pat, box.partitions)}
        for prefix in wanted - self._subs:
            self.sock.setsockopt(zmq.SUBSCRIBE, prefix)
        for prefix in self._subs - wanted:
            self.sock.setsockopt(zmq.UNSUBSCRIBE, prefix)
        self._subs = wanted
        self._routes = {}

    def _targets(self, key: bytes, msg: Message) -> list[Inbox]:
        targets = self._routes.get(key)
        if targets is None:
            targets = self._routes[key] = [b for b in self._inboxes
                                           if wants(b.patterns, b.partitions, msg.topic, msg.partition)]
        return targets

    def _receive(self) -> None:
        sock = self.sock
        while True:
            frames = sock.recv_multipart()
            try:
                msg = parse(frames)
            except Malformed as exc:
                self.malformed += 1
                log.error("dropping a malformed message on %s: %s", self.endpoint, exc)
                if self.on_malformed is not None:
                    self.on_malformed(frames, str(exc))
                continue
            self.frames += 1
            for box in self._targets(bytes(frames[0]), msg):
                while not box.closed:  # wait for a full inbox, unless its bolt has gone
                    try:
                        box.queue.put(msg, timeout=0.1)
                        break
                    except gevent.queue.Full:
                        pass

    def _detach(self, inbox: Inbox) -> None:
        if inbox.closed:
            return
        inbox.closed = True
        self._inboxes.remove(inbox)
        if not self._inboxes:
            self.close()
            return
        self.sock.setsockopt(zmq.UNSUBSCRIBE, READY_PREFIX + inbox.name.encode())
        self._resubscribe()

    def close(self) -> None:
        """Stop receiving and close the socket (also done when the last inbox closes)."""
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None
        for box in self._inboxes:
            box.closed = True
        self._inboxes = []
        if not self.sock.closed:
            self.sock.close()
