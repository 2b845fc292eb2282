"""Settings, loaded once: a TOML file plus ANALYTICS_* environment overrides.

Precedence: built-in defaults < the TOML file (``--config`` or ANALYTICS_CONFIG)
< environment (ANALYTICS_STORE, ANALYTICS_ETCD, ANALYTICS_MODE). The result is
a typed, frozen-by-convention object passed down to every component; nothing
else reads the environment.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfoNotFoundError

from analytics.periods import zone

__all__ = ["Settings", "BrokerSettings", "GameSettings", "ConfigError", "load_settings", "redact"]

#: Runtime data (disk logs, spout offsets, dead letters, the embedded store, pid and log
#: files) lives here by default: a directory of its own, ignored by git, apart from the
#: committed sample logs in data/ (so a glob over data/ never meets a run's own logs).
DEFAULT_DATA_DIR = "var"
#: The embedded store when no URL is configured: analytics.db in the data directory.
DEFAULT_STORE = f"sqlite:///{DEFAULT_DATA_DIR}/analytics.db"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names it."""


@dataclass
class GameSettings:
    name: str
    #: IANA time zone in which the game's days, weeks and months start.
    tz: str = "Asia/Shanghai"
    #: Currency of the payment amounts (ISO 4217, e.g. "CNY"): the dashboard labels revenue with it.
    currency: str = ""


@dataclass
class BrokerSettings:
    #: Where spouts and bolts push tuples (PULL side of the broker).
    receiver: str = "tcp://127.0.0.1:5000"
    #: Where bolts subscribe by topic (XPUB side of the broker).
    sender: str = "tcp://127.0.0.1:5001"
    #: High-water mark in frames on every socket; a full pipe blocks the sender.
    hwm: int = 1000
    #: Tuples per frame: batching is what makes the broker fast.
    batch_size: int = 200
    #: A partial batch is sent after this many milliseconds.
    linger_ms: int = 20
    #: Forward nothing until every expected subscriber has said it is ready.
    wait_for_subscribers: bool = True
    #: Directory of CURVE keys (`analytics keys DIR`; docs/cluster.md says which file goes to which
    #: host). Set, every tcp socket of the topology is encrypted and the broker takes only clients
    #: whose public key (a *.key file) is in it; "" leaves tcp in the clear.
    curve_keys: str = ""
    #: Let the broker bind a non-loopback address without curve_keys: whoever reaches the port can
    #: then push tuples (a forged payment is counted). Only for a network you trust, on purpose.
    insecure: bool = False


@dataclass
class Settings:
    #: Name of this cluster: the etcd key prefix /analytics/<cluster>/.
    cluster: str = "default"
    #: Store URL: sqlite:///path or mongodb://host/db (default: sqlite, <data_dir>/analytics.db).
    store: str = DEFAULT_STORE
    #: etcd endpoint host:port; empty means no cluster registration.
    etcd: str = ""
    #: 'inproc' (one process, greenlets) or 'tcp' (separate processes over tcp).
    mode: str = "inproc"
    #: tcp replays and demos: 0 runs each component in a process of its own; N groups them by
    #: stage into N worker processes (spouts, the bolts they feed, the rest): one per core.
    #: `analytics start` always runs one daemon per component.
    workers: int = 0
    #: Disk logs, dead letters, spout offsets and the default store live here.
    data_dir: str = DEFAULT_DATA_DIR
    #: Pid files and component logs for `analytics start`.
    run_dir: str = f"{DEFAULT_DATA_DIR}/run"
    #: Partitions of (game, area) that instances of one bolt divide between them.
    partitions: int = 1
    #: Zone used for games not listed under [games].
    default_tz: str = "Asia/Shanghai"
    #: Dedupe records older than this many days may be purged.
    dedupe_horizon_days: int = 90
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    games: dict[str, GameSettings] = field(default_factory=dict)
    #: Per-component options, e.g. [components.loginhour] flush_every = 5000.
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Per-source options, e.g. [sources.gamelog] game = "dl", files = [...].
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Everything else in the file (http, alerts, cluster, ...), by table name.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The file this came from, if any.
    path: str | None = None

    def currency_of(self, game: str) -> str:
        """The currency of a game's payment amounts ('' when not configured)."""
        g = self.games.get(game)
        return g.currency if g else ""

    def tz_of(self, game: str) -> str:
        """The time zone of a game (its own, else the default)."""
        g = self.games.get(game)
        return g.tz if g else self.default_tz

    def component(self, name: str) -> dict[str, Any]:
        """Options of one component (empty if none configured)."""
        return self.components.get(name, {})

    def data_path(self, *parts: str) -> Path:
        return Path(self.data_dir, *parts)


#: What `redact` hides: the password of a URL's user:password@, and the value of any key or
#: query parameter whose name says password, secret or token (a dict's repr, JSON, a query string).
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s'\"]*):[^\s'\"]*@")
_SECRET_VALUE = re.compile(r"(?i)((?<![\w.-])['\"]?[\w-]*(?:password|passwd|secret|token)[\w-]*['\"]?\s*[:=]\s*['\"]?)"
                           r"[^'\"\s,&;}]+")


def redact(text: str) -> str:
    """`text` without secrets: `mongodb://u:***@h/db`, `password=***`, `'password': '***'`.

    For whatever is shown to people (log lines, errors, `analytics run`'s summary,
    dead letters): a store URL or an etcd option may carry a password; a figure never does.
    """
    return _SECRET_VALUE.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


def _check_tz(name: str, where: str) -> str:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: unknown time zone {name!r} (use an IANA name such as 'Asia/Shanghai')") from None
    return name


def _dataclass_from(cls: type, data: Mapping[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
        kwargs[key] = value
    return cls(**kwargs)


def load_settings(path: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Load settings from `path` (or ANALYTICS_CONFIG), then apply the environment.

    `env` defaults to os.environ; tests pass their own. Keyword overrides win last.
    """
    env = os.environ if env is None else env
    path = path or env.get("ANALYTICS_CONFIG") or None
    raw: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"configuration file {str(p)!r} does not exist")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    if raw:
        from analytics.options import check_config  # imports the components: only when a file is read
        try:
            check_config(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    top = dict(raw.pop("analytics", {}))
    broker = _dataclass_from(BrokerSettings, raw.pop("broker", {}), "[broker]")
    games = {}
    for name, g in raw.pop("games", {}).items():
        if not isinstance(g, dict):
            raise ConfigError(f"[games.{name}] must be a table")
        games[name] = _dataclass_from(GameSettings, {"name": name, **g}, f"[games.{name}]")
        _check_tz(games[name].tz, f"[games.{name}] tz")
    components = raw.pop("components", {})
    sources = raw.pop("sources", {})
    settings = _dataclass_from(Settings, top, "[analytics]")
    settings = replace(settings, broker=broker, games=games, components=components,
                       sources=sources, extra=raw, path=str(path) if path else None)
    if env.get("ANALYTICS_STORE"):
        settings.store = env["ANALYTICS_STORE"]
    if env.get("ANALYTICS_ETCD"):
        settings.etcd = env["ANALYTICS_ETCD"]
    if env.get("ANALYTICS_MODE"):
        settings.mode = env["ANALYTICS_MODE"]
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    if "store" not in top and not env.get("ANALYTICS_STORE") and overrides.get("store") is None:
        settings.store = f"sqlite:///{settings.data_path('analytics.db')}"  # the embedded store, with the data
    _check_tz(settings.default_tz, "[analytics] default_tz")
    if settings.mode not in ("inproc", "tcp"):
        raise ConfigError(f"mode must be 'inproc' or 'tcp', not {settings.mode!r}")
    if not isinstance(settings.workers, int) or settings.workers < 0:
        raise ConfigError(f"workers must be an integer >= 0, not {settings.workers!r}")
    if settings.partitions < 1:
        raise ConfigError(f"partitions must be >= 1, not {settings.partitions}")
    if not isinstance(settings.broker.curve_keys, str):
        raise ConfigError(f"[broker] curve_keys must be a directory path, not {settings.broker.curve_keys!r}")
    if not isinstance(settings.broker.insecure, bool):
        raise ConfigError(f"[broker] insecure must be true or false, not {settings.broker.insecure!r}")
    return settings
