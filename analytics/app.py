"""What the CLI commands do, apart from argument parsing: replay files, run the topology."""
from __future__ import annotations

import glob
import logging
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

import gevent
import gevent.event

from analytics.config import Settings, redact
from analytics.store import open_store
from analytics.runners import DrainReport, LocalRunner
from analytics.topology import ComponentSpec, DEFAULT_COMPONENTS, Topology, default_topology
from analytics.transport import check_broker

__all__ = ["replay", "replay_settings", "run_forever", "source_spec", "SOURCES", "REPLAY_FLUSH"]

log = logging.getLogger(__name__)

#: The spouts a replay can feed, by source name.
SOURCES = {name: cls for name, cls in DEFAULT_COMPONENTS if cls.startswith("spouts.")}

#: A replay's flush policy for every bolt, unless [components.<name>] sets its own. A store
#: write costs per period a flush touched, not per record, and a replay is a backfill that
#: nobody watches tuple by tuple: larger, rarer flushes touch each period fewer times
#: (shuffled input touches a new hour period with almost every record). Memory stays
#: bounded by flush_every; the end of the stream flushes whatever is pending.
REPLAY_FLUSH = {"flush_every": 100_000, "flush_seconds": 10.0}


def replay_settings(settings: Settings, topology: Topology) -> Settings:
    """`settings` with REPLAY_FLUSH as every bolt's default (configured options win)."""
    components = dict(settings.components)
    for name in topology.bolts:
        components[name] = {**REPLAY_FLUSH, **settings.components.get(name, {})}
    return replace(settings, components=components)


def source_spec(settings: Settings, source: str, files: Iterable[str], game: str | None) -> ComponentSpec:
    """A finite spout reading `files` once (no disk log: they are disk logs already)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(sorted(SOURCES))}")
    paths: list[str] = []
    for f in files:
        matched = sorted(glob.glob(f)) if any(c in f for c in "*?[") else [f]
        for p in matched:
            if not Path(p).is_file():
                raise FileNotFoundError(f"no such file: {p}")
            paths.append(str(Path(p).resolve()))
    if not paths:
        raise FileNotFoundError(f"no files match {', '.join(files)}")
    # Read each file once from its start; no HTTP/stdin even if the live source is configured so.
    options: dict[str, Any] = {"files": paths, "follow": False, "resume": False, "http": None, "stdin": None}
    game = game or settings.sources.get(source, {}).get("game")
    if source == "gamelog":
        if not game:
            raise ValueError("gamelog records do not name their game: pass --game NAME "
                             "(or set [sources.gamelog] game in the configuration)")
        options["game"] = game
    # Its own name: the live spout's saved offsets are never touched by a replay.
    return ComponentSpec(f"replay_{source}", SOURCES[source], options)


def replay(settings: Settings, sources: list[ComponentSpec], *, progress: bool = True,
           timeout: float | None = None) -> DrainReport:
    """Feed finite sources through the bolts of the default topology until every tuple is stored."""
    topology = default_topology(settings).with_spouts(sources)
    settings = replay_settings(settings, topology)
    store = open_store(settings.store, dedupe_horizon_days=settings.dedupe_horizon_days)
    try:
        if settings.mode == "tcp":
            from analytics.processes import ProcessRunner
            runner: Any = ProcessRunner(topology, settings, disk_log=False).start()
        else:
            runner = LocalRunner(topology, settings, store=store, disk_log=False).start()
        bar = _progress_bar(runner, topology) if progress and settings.mode != "tcp" else None
        try:
            report = runner.wait_drained(timeout)
        finally:
            if bar is not None:
                bar.kill()
            runner.stop()
        return report
    finally:
        store.close()


def _progress_bar(runner: LocalRunner, topology: Topology) -> gevent.Greenlet | None:
    """A tqdm bar of bytes read with records/s, shown only on a terminal."""
    import sys

    from tqdm import tqdm
    if not sys.stderr.isatty():
        return None
    spouts = [runner.components[n] for n in topology.spouts]

    def update() -> None:
        total = sum((s.progress()[1] or 0) for s in spouts if hasattr(s, "progress"))
        started = time.monotonic()
        with tqdm(total=total, unit="B", unit_scale=True, desc="replay", file=sys.stderr) as bar:
            while True:
                done = sum(s.progress()[0] for s in spouts if hasattr(s, "progress"))
                records = sum(sum(s.counters.emitted.values()) + s.counters.combined for s in spouts)
                rate = records / max(time.monotonic() - started, 1e-6)
                bar.n = done
                bar.set_postfix_str(f"{records:,} records, {rate:,.0f} records/s"
                                    + (" (read; storing the rest)" if total and done >= total else ""),
                                    refresh=False)
                bar.refresh()
                gevent.sleep(0.2)
    return gevent.spawn(update)


def serving(runner: LocalRunner, settings: Settings, wait: float = 10.0) -> list[str]:
    """What a running topology serves and where (what `analytics run` prints once it is up)."""
    topology = runner.topology
    b = settings.broker
    lines = [f"{len(topology.spouts)} spouts, {len(topology.bolts)} bolts in this process; store {redact(settings.store)}",
             f"broker: feed tuples to {b.receiver} (bin/read_stdin_gamelog), subscribe at {b.sender}"]
    for name in topology.spouts:
        spout = runner.components.get(name)
        if getattr(spout, "serving", False) and hasattr(spout, "ready"):
            if spout.ready.wait(wait):
                lines.append(f"{name}: event intake, stats API and dashboard on {spout.url}/")
            else:
                lines.append(f"{name}: the HTTP server is not listening after {wait:g}s (see the log)")
        elif spout is not None and getattr(spout, "reader", None) is not None:
            files = spout.option("files")
            what = (f"files {', '.join(files) if isinstance(files, list) else files}" if files
                    else f"HTTP {spout.option('http')}" if spout.option("http") else "stdin")
            lines.append(f"{name}: reads {what}")
    lines.append(f"disk logs, offsets and dead letters in {settings.data_path()}/; SIGTERM or Ctrl-C flushes and "
                 "stops")
    return lines


def run_forever(settings: Settings, only: Iterable[str] | None = None) -> int:
    """Run the configured topology in the foreground until SIGTERM/SIGINT, then drain and exit 0.

    Never half alive: if the broker or a component dies (an error the base classes do not
    absorb), the rest is stopped (each bolt stores what it holds) and the run exits 1, so
    that its supervisor restarts it; checkpoints make the restart exact.
    """
    topology = default_topology(settings, only)
    check_broker(settings.broker)  # it binds the tcp endpoints for feeders outside this process
    store = open_store(settings.store, dedupe_horizon_days=settings.dedupe_horizon_days)
    runner = LocalRunner(topology, settings, store=store, listen=True).start()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    log.info("topology running: %d spouts, %d bolts, store %s", len(topology.spouts), len(topology.bolts),
             redact(settings.store))
    for line in serving(runner, settings):
        print(f"analytics run: {line}", file=sys.stderr, flush=True)
    failed: list[str] = []
    while not stop.wait(0.5):
        failed = runner.failures()
        if failed:
            log.error("stopping: %s died (%s); exit 1 for the supervisor to restart the run",
                      "a component" if len(failed) == 1 else f"{len(failed)} components", "; ".join(failed))
            break
    else:
        log.info("stopping: flushing every bolt")
    runner.stop()
    store.close()
    return 1 if failed else 0
