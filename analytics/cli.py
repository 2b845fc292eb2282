"""`analytics`: the one command-line entry point.

Exit codes: 0 success; 1 the command ran but found a problem (lost tuples,
failing nodes, nothing drained); 2 bad usage or configuration; 3 a store or
cluster that cannot be reached; 141 (128 + SIGPIPE) when the reader of stdout went
away (`analytics query ... | head -1`), quietly, as other Unix tools do. Errors are
one line on stderr of at most ERROR_WIDTH characters, not a traceback (set
ANALYTICS_DEBUG=1 for the whole message and the traceback).
"""
from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

__all__ = ["main", "brief"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
#: The exit status of a process killed by SIGPIPE, as the shell reports it.
EXIT_PIPE = 128 + signal.SIGPIPE
#: Longest error line the CLI prints (the rest only with ANALYTICS_DEBUG=1).
ERROR_WIDTH = 240
#: Where a driver's message turns from the cause into its diagnostics (pymongo appends the
#: timeouts it was configured with and the whole topology description).
_DETAIL = re.compile(r"\s*\(configured timeouts:[^)]*\)|,?\s*Timeout: [^,]*,?|,?\s*Topology Description: .*",
                     re.S)


def brief(message: str, width: int = ERROR_WIDTH) -> str:
    """One line of at most `width` characters: the cause, without a driver's diagnostics."""
    text = " ".join(_DETAIL.sub("", message).split())
    if len(text) > width:
        text = text[:width - 1].rstrip() + "…"
    return text


def _store_host(args: argparse.Namespace) -> str:
    """host:port of the store the command was given (no credentials), or '' if it cannot be told."""
    try:
        url = _settings(args).store
    except Exception:  # the error being reported may be the configuration itself
        return ""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or parts.path


#: The first bytes of every SQLite database file.
_SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for another scheme)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        return None
    return Path(parts.path[1:] if parts.path.startswith("/") else parts.path)


def check_store_url(url: str, *, must_exist: bool = False) -> None:
    """Refuse, before anything runs, a store URL that cannot work.

    An unknown scheme is a configuration error (exit 2); a SQLite path through a
    regular file, a file that is not a SQLite database, and (`must_exist`, the read
    commands, which never create a store) a file that is not there are a store that
    cannot be reached (exit 3).
    """
    from analytics.config import ConfigError, redact
    from analytics.store import BACKENDS
    from analytics.store.base import StoreUnavailable
    scheme = urlsplit(url).scheme.lower()
    if scheme not in BACKENDS:
        raise ConfigError(redact(f"unknown store URL {url!r}: known schemes are "
                                 f"{', '.join(s + '://' for s in BACKENDS)}"))
    path = sqlite_path(url)
    if path is None or not str(path):
        return
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise StoreUnavailable(f"store {path}: {parent} is a file, not a directory")
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if head and head != _SQLITE_MAGIC:
            raise StoreUnavailable(f"store {path} is not a SQLite database")
    elif path.exists():
        raise StoreUnavailable(f"store {path} is not a file")
    elif must_exist:
        raise StoreUnavailable(f"no store at {path}: nothing was stored there (a replay, `analytics run` or "
                               f"`analytics demo` writes one; is --store right?)")


def _settings(args: argparse.Namespace) -> Any:
    from analytics.config import GameSettings, load_settings
    s = load_settings(args.config, store=getattr(args, "store", None), mode=getattr(args, "mode", None),
                      workers=getattr(args, "workers", None))
    check_store_url(s.store)
    tz = getattr(args, "tz", None)
    game = getattr(args, "game", None)
    if tz:
        from analytics.config import _check_tz
        _check_tz(tz, "--tz")
        if game:
            s.games[game] = GameSettings(game, tz)
        else:
            s.default_tz = tz
    return s


def cmd_version(args: argparse.Namespace) -> int:
    from analytics import __version__
    print(f"analytics {__version__}")
    return EXIT_OK


def _print_report(report: Any, topology_problems: list[str], as_json: bool) -> None:
    import orjson
    totals = report.totals()
    ops = report.store_ops()
    per_1000 = None if ops is None else round(ops.get("writes", 0) * 1000 / max(totals["read"], 1), 2)
    if as_json:
        print(orjson.dumps({"totals": totals, "problems": topology_problems, "seconds": round(report.seconds, 3),
                            "store_ops": ops, "store_writes_per_1000_records": per_1000,
                            "spouts": report.spouts, "bolts": report.bolts}).decode())
        return
    print(f"read {totals['read']}  accepted {totals['accepted']}  rejected {totals['rejected']}  "
          f"ignored {totals['ignored']}  deduplicated {totals['deduplicated']}  errors {totals['errors']}  "
          f"in {report.seconds:.2f}s", file=sys.stderr)
    if ops is not None:
        print(f"store: {ops.get('reads', 0)} reads, {ops.get('writes', 0)} writes "
              f"({per_1000} writes per 1,000 records read)", file=sys.stderr)
    for p in topology_problems:
        print(f"problem: {p}", file=sys.stderr)


#: Record kinds a replay reads; a disk log's name starts with its kind ('payment_202501071200.txt').
REPLAY_SOURCES = ("gamelog", "payment", "syncuser", "http")


def _files_by_source(files: list[str], source: str | None) -> dict[str, list[str]]:
    """Group the replay's files by record kind: --source for all, else each file's name prefix.

    Sources may be replayed together or one at a time, in any order: bolts fed by
    several of them (server, usercenter, ...) read the others' state from the store.
    """
    if source:
        return {source: list(files)}
    groups: dict[str, list[str]] = {}
    for f in files:
        name = os.path.basename(f)
        kind = next((k for k in REPLAY_SOURCES if name.startswith(k + "_")), "gamelog")
        groups.setdefault(kind, []).append(f)
    return groups


#: A gamelog file whose name carries its game: gamelog_<game>_<anything>.txt (the samples'
#: gamelog_dl_sample.txt, the disk log of a spout named gamelog_<game>). A name whose second
#: part is a time stamp (the disk log gamelog_202501071200.txt) does not say.
_GAME_IN_NAME = re.compile(r"^gamelog_(?P<game>[A-Za-z][A-Za-z0-9-]*)_")


def game_in_name(path: str) -> str | None:
    """The game a gamelog file's name records, or None."""
    m = _GAME_IN_NAME.match(os.path.basename(path))
    return m.group("game") if m else None


def _expand(patterns: list[str]) -> list[str]:
    """The files the arguments name (globs expanded here too, for shells that did not)."""
    import glob
    files: list[str] = []
    for p in patterns:
        if any(c in p for c in "*?["):
            matched = sorted(glob.glob(p))
            if not matched:
                raise FileNotFoundError(f"no files match {p}")
            files.extend(matched)
        else:
            files.append(p)
    return files


def _gamelogs_by_game(files: list[str], game: str | None, configured: str | None) -> dict[str, list[str]]:
    """Split gamelog files by game: --game, else the game in the file's name, else the configured one.

    A file whose name records another game than --game is an error: its players would be
    counted as --game's (gamelog records do not name their game).
    """
    groups: dict[str, list[str]] = {}
    for f in files:
        named = game_in_name(f)
        if named and game and named != game:
            raise ValueError(f"{f} holds game {named!r} (its name says so), not --game {game}: "
                             f"replay it on its own with --game {named}")
        chosen = game or named or configured
        if not chosen:
            raise ValueError(f"{f}: gamelog records do not name their game: pass --game NAME (or name the file "
                             "gamelog_<game>_*.txt, or set [sources.gamelog] game in the configuration)")
        groups.setdefault(chosen, []).append(f)
    return groups


def replay_specs(settings: Any, files: list[str], source: str | None, game: str | None) -> list[Any]:
    """One finite spout per record kind, and per game for gamelog files."""
    from analytics.app import source_spec
    specs = []
    for kind, group in _files_by_source(_expand(files), source).items():
        if kind != "gamelog":
            specs.append(source_spec(settings, kind, group, game))
            continue
        by_game = _gamelogs_by_game(group, game, settings.sources.get("gamelog", {}).get("game"))
        for g, paths in by_game.items():
            spec = source_spec(settings, kind, paths, g)
            if len(by_game) > 1:
                spec.name = f"replay_gamelog_{g}"
            specs.append(spec)
    return specs


#: Lines of a file `guess_source` looks at.
GUESS_LINES = 50


def record_kind(line: bytes) -> str | None:
    """The record kind a raw line's shape says (None: not a JSON object of a known shape)."""
    import orjson
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rec, dict):
        return None
    if isinstance(rec.get("op"), dict) and isinstance(rec.get("data"), dict):
        return "gamelog"
    if isinstance(rec.get("users"), dict) and "game" in rec:
        return "payment"
    if "uid" in rec and "code" in rec and "game" in rec:
        return "http"
    if "uid" in rec and "game" in rec:
        return "syncuser"
    return None


def kinds_of(path: str, lines: int = GUESS_LINES) -> dict[str, int]:
    """How many of a file's first lines have the shape of each record kind."""
    from collections import Counter
    kinds: Counter[str] = Counter()
    try:
        with open(path, "rb") as f:
            for _, line in zip(range(lines), f):
                kind = record_kind(line) if line.strip() else None
                if kind:
                    kinds[kind] += 1
    except OSError:
        pass
    return dict(kinds)


def wrong_source_warnings(report: Any, specs: list[Any], settings: Any) -> list[str]:
    """One warning per file whose records were all rejected, naming the likely --source.

    A spout that accepted none of its records warns for each of its files; in a spout
    that accepted some, a file none of whose first lines has the spout's shape (but
    another's) does.
    """
    warnings = []
    for spec in specs:
        r = report.spouts.get(spec.name, {})
        accepted = sum(r.get("sent", {}).values()) + r.get("combined", 0)
        if not r.get("rejected"):
            continue
        source = spec.name.removeprefix("replay_").split("_")[0]
        for path in spec.options.get("files", []):
            kinds = kinds_of(path)
            guess = max(kinds, key=kinds.__getitem__) if kinds else None
            if accepted and (kinds.get(source) or guess is None):
                continue
            hint = (f"its lines look like {guess} records: replay it with --source {guess}"
                    if guess and guess != source else "see why in the dead letters")
            warnings.append(f"every record of {path} was rejected as {source} "
                            f"({settings.data_path('deadletter', spec.name + '.jsonl')}); {hint}")
    return warnings


def cmd_replay(args: argparse.Namespace) -> int:
    from analytics.app import replay
    from analytics.logs import setup_logging
    setup_logging(args.log_level)
    settings = _settings(args)
    specs = replay_specs(settings, args.files, args.source, args.game)
    report = replay(settings, specs, progress=not args.no_progress, timeout=args.timeout)
    problems = report.problems()
    _print_report(report, problems, args.json)
    warnings = wrong_source_warnings(report, specs, settings)
    for w in warnings:
        print(brief(f"warning: {w}", width=2 * ERROR_WIDTH), file=sys.stderr)
    return EXIT_PROBLEM if problems or warnings else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from analytics.demo import run_demo
    from analytics.logs import setup_logging
    setup_logging(args.log_level)
    samples = args.samples
    if samples is None:  # ./data, else the samples beside the package (an editable install run elsewhere)
        here = Path("data")
        samples = here if (here / "samples.toml").is_file() else Path(__file__).resolve().parents[1] / "data"
    return run_demo(_settings(args), data_dir=samples)


class _NoDocuments:
    """A store with nothing in it: query() checks its arguments before it reads."""

    def find(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return []


def cmd_query(args: argparse.Namespace) -> int:
    import orjson

    from analytics.query import parse_time, query
    from analytics.store import open_store
    settings = _settings(args)
    tz = settings.tz_of(args.game) if args.game else settings.default_tz
    where = {}
    for item in args.where or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--where takes FIELD=VALUE, not {item!r}")
        where[key] = value
    def run(store: Any) -> list[dict[str, Any]]:
        return query(store, args.collection, game=args.game, area=args.area, plat=args.plat,
                     ts_from=parse_time(args.from_, tz), ts_to=parse_time(args.to, tz), where=where,
                     limit=args.limit, userlist=args.userlist)
    run(_NoDocuments())  # a bad argument is reported before the store is looked at
    check_store_url(settings.store, must_exist=True)  # a read never creates a store
    with open_store(settings.store) as store:
        docs = run(store)
    for d in docs:
        if args.json:
            sys.stdout.write(orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode() + "\n")
        else:
            print("  ".join(f"{k}={v}" for k, v in d.items()))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from gevent import monkey
    monkey.patch_all()
    from analytics.app import run_forever
    from analytics.config import ConfigError
    from analytics.logs import setup_logging
    settings = _settings(args)
    if not settings.path:
        raise ConfigError("run needs a configuration file: --config FILE or ANALYTICS_CONFIG (the spouts "
                          "need their sources; an annotated example: deploy/config/one-host.toml)")
    setup_logging(args.log_level)
    return run_forever(settings, args.only.split(",") if args.only else None)


def cmd_start(args: argparse.Namespace) -> int:
    from analytics.service import start
    return start(_settings(args), args.components or None)


def cmd_stop(args: argparse.Namespace) -> int:
    from analytics.service import stop
    return stop(_settings(args), args.components or None, timeout=args.timeout)


def cmd_restart(args: argparse.Namespace) -> int:
    from analytics.service import restart
    return restart(_settings(args), args.components or None, timeout=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    from analytics.cluster import status
    from analytics.config import redact
    settings = _settings(args)
    if not settings.etcd or args.local:
        from analytics.service import local_status
        text, code = local_status(settings, args.components or None, as_json=args.json)
        print(redact(text))
        return code
    if args.expect:
        expected = args.expect.split(",")
    else:  # what `start` runs on this host: a process that died has left the cluster view, not its pid file
        from analytics.service import started_here
        expected = started_here(settings, args.components or None)
    text, code = status(settings, expected=expected, as_json=args.json)
    print(redact(text))
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    from gevent import monkey
    monkey.patch_all()
    from analytics.logs import setup_logging
    from analytics.web.serve import serve
    setup_logging(args.log_level)
    settings = _settings(args)
    from analytics.web.access import ReadAccess
    http = settings.extra.get("http", {})
    ReadAccess.from_table(http).check_bind(args.host or str(http.get("host", "127.0.0.1")))  # configuration first
    check_store_url(settings.store, must_exist=True)  # a read never creates a store
    try:
        return serve(settings, args.host, args.port)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        from analytics.config import ConfigError
        http = settings.extra.get("http", {})
        port = http.get("port", 8600) if args.port is None else args.port
        where = f"{args.host or http.get('host', '127.0.0.1')}:{port}"
        raise ConfigError(f"cannot listen on {where}: {exc.strerror} (another server there? --port or "
                          "[http] port chooses another)") from None


def cmd_keys(args: argparse.Namespace) -> int:
    """Write CURVE key pairs for [broker] curve_keys and say which file goes to which host."""
    from analytics.transport import create_keys
    files = create_keys(args.dir, force=args.force, client_only=args.client_only)
    print("\n".join(f"wrote {f}" for f in files))
    d = Path(args.dir)
    if args.client_only:
        print(f"this host: set [broker] curve_keys = \"{d}\" and copy broker.key from the broker host into {d}; "
              f"on the broker host, copy this client.key into its curve_keys as <this host>.key and restart "
              f"the broker")
    else:
        print(f"broker host: {d} as it is (broker.key_secret stays there; every *.key in it is a client "
              f"allowed in)\nother hosts: broker.key, client.key and client.key_secret (secret: mode 0600); "
              f"set [broker] curve_keys to their directory on every host (docs/cluster.md)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="analytics", description="Real-time game analytics: spouts -> broker -> bolts -> store.")
    ap.add_argument("--config", help="TOML configuration file (default: $ANALYTICS_CONFIG)")
    ap.add_argument("--log-level", default=None,
                    help="logging level (default: $ANALYTICS_LOG_LEVEL, else INFO for run, WARNING for the other "
                         "commands)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        # also after the subcommand (`analytics start --config F`); SUPPRESS keeps one given before
        p.add_argument("--config", default=argparse.SUPPRESS, help="TOML configuration file (default: "
                       "$ANALYTICS_CONFIG)")
        p.add_argument("--log-level", default=argparse.SUPPRESS, help="logging level (as before the command)")
        return p

    add("version", cmd_version, "print the version")

    p = add("replay", cmd_replay, "feed log files through the topology, wait until every tuple is stored, print counts")
    p.add_argument("files", nargs="+", metavar="FILE", help="disk logs or other JSON-lines files (globs allowed)")
    p.add_argument("--source", choices=REPLAY_SOURCES,
                   help="record kind of every FILE (default: from each file's name, <source>_*.txt as the "
                        "disk logs are named, else gamelog); sources can be replayed together or one at a "
                        "time, in any order: the store comes out the same")
    p.add_argument("--game", help="game of the gamelog records (they do not carry it; default: the game in "
                                  "the file's name, gamelog_<game>_*.txt, else [sources.gamelog] game)")
    p.add_argument("--tz", help="IANA time zone of the game's days (overrides the configuration)")
    p.add_argument("--store", help="store URL (default: $ANALYTICS_STORE or sqlite:///var/analytics.db)")
    p.add_argument("--mode", choices=["inproc", "tcp"], help="one process (inproc) or separate processes (tcp)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="tcp mode: group the components into N worker processes by stage (0: one each)")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    p = add("demo", cmd_demo, "replay the sample logs in data/ through the whole topology and print the stats")
    p.add_argument("--store", help="store URL (default: a fresh SQLite file, var/demo.db)")
    p.add_argument("--samples", help="directory holding *_sample.txt and samples.toml (default: data)")
    p.add_argument("--mode", choices=["inproc", "tcp"])

    p = add("query", cmd_query, "print stored documents of one collection, one per line")
    p.add_argument("collection")
    p.add_argument("--game")
    p.add_argument("--area")
    p.add_argument("--plat")
    p.add_argument("--from", dest="from_", metavar="TIME", help="ts >= TIME (epoch, YYYY-MM-DD or ISO, in the game's zone)")
    p.add_argument("--to", metavar="TIME", help="ts < TIME")
    p.add_argument("--where", action="append", metavar="FIELD=VALUE", help="extra equality filter (repeatable)")
    p.add_argument("--limit", type=int)
    p.add_argument("--userlist", action="store_true", help="add the seed's userlist field from the membership sets")
    p.add_argument("--json", action="store_true", help="one JSON document per line")
    p.add_argument("--store")

    p = add("run", cmd_run, "run the topology in the foreground until SIGTERM/SIGINT (then flush and exit)")
    p.add_argument("--only", help="comma-separated component names to run (default all)")
    p.add_argument("--store")
    p.add_argument("--mode", choices=["inproc", "tcp"])

    for name, fn, text in (("start", cmd_start, "start the topology (or some components) as daemons with pid and "
                                                  "log files under run_dir; already running ones are left alone"),
                           ("stop", cmd_stop, "stop daemons: SIGTERM to spouts, then bolts (they flush), then "
                                              "the broker; SIGKILL after --timeout"),
                           ("restart", cmd_restart, "stop, then start")):
        p = add(name, fn, text)
        p.add_argument("components", nargs="*", metavar="COMPONENT",
                       help="broker, a component name or NAME#INSTANCE (default: everything this host runs)")
        if name != "start":
            p.add_argument("--timeout", type=float, default=30.0,
                           help="seconds each group (spouts, bolts, broker) gets before SIGKILL (default 30)")

    p = add("serve", cmd_serve, "serve the stats API and the dashboard over the configured store (no intake)")
    p.add_argument("--host", help="listen address (default: [http] host or 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port, 0 for any free one (default: [http] port or 8600)")
    p.add_argument("--store")

    p = add("keys", cmd_keys, "write the broker's and a client's CURVE key pairs into DIR for [broker] curve_keys "
                              "(secret files mode 0600; docs/cluster.md says which file goes to which host)")
    p.add_argument("dir", metavar="DIR", help="directory to write broker.key, broker.key_secret, client.key and "
                                              "client.key_secret into (created if missing)")
    p.add_argument("--client-only", action="store_true",
                   help="only a client pair (a host of its own key: its client.key goes to the broker's DIR)")
    p.add_argument("--force", action="store_true", help="replace existing key files (hosts holding the old "
                                                        "keys are locked out until they get the new ones)")

    p = add("status", cmd_status, "show the live topology from etcd (or, without etcd, this host's pid files); "
                                  "exit 1 if a node is failing or missing")
    p.add_argument("components", nargs="*", metavar="COMPONENT", help="pid-file view: only these")
    p.add_argument("--json", action="store_true")
    p.add_argument("--expect", help="comma-separated node names that must be present (etcd view; default: "
                                    "the processes `analytics start` runs on this host, by their pid files)")
    p.add_argument("--local", action="store_true", help="the pid-file view even when etcd is configured")
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments; a flag the subcommand does not know is reported with the subcommand's usage."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.log_level is None:  # the topology says what it does; the other commands print their own lines
        args.log_level = os.environ.get("ANALYTICS_LOG_LEVEL") or (
            "INFO" if args.command == "run" else "WARNING")
    from analytics.config import ConfigError, redact
    from analytics.store.base import QueryError, StoreError, StoreUnavailable
    from analytics.topology import TopologyError
    try:
        code = args.fn(args)
        sys.stdout.flush()  # here, so that a closed pipe is seen while it can still be handled
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly. Point stdout at /dev/null so the
        # interpreter's own flush at exit does not fail again on what is still buffered.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except (ConfigError, QueryError, TopologyError, FileNotFoundError, FileExistsError, ValueError) as exc:
        error, code, msg = exc, EXIT_USAGE, str(exc)
    except StoreUnavailable as exc:
        error, code, msg = exc, EXIT_UNAVAILABLE, brief(str(exc))
        host = _store_host(args)
        if not msg.startswith(("store ", "no store ")):  # else it names the store already
            msg = f"store unavailable: {msg}" if not host or host in msg else f"store {host} unavailable: {msg}"
    except (StoreError, TimeoutError, RuntimeError) as exc:
        error, code, msg = exc, EXIT_PROBLEM, str(exc)
    if os.environ.get("ANALYTICS_DEBUG"):
        raise error  # the whole message and the traceback
    print(brief(redact(f"error: {msg}")), file=sys.stderr)  # a store URL's password stays out of it
    return code


if __name__ == "__main__":
    sys.exit(main())
