"""Multi-process mode: the broker and the components in processes of their own over tcp.

One process per component, or with settings.workers = N the components grouped by
stage into N worker processes (topology.worker_groups), each running its group as
greenlets. `python -m analytics.processes broker|component NAME[,NAME...]` is what each child runs;
ProcessRunner starts a whole topology that way from one parent (replay in tcp
mode, the multi-process tests and benchmarks). The same Topology and component
classes are used as in one process: only the transport endpoints differ.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["ProcessRunner", "free_port", "main", "run_broker", "run_components"]

log = logging.getLogger("analytics.processes")  # also when run as __main__


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ProcessRunner:
    """Runs a topology as separate processes on this host; the parent coordinates the drain."""

    def __init__(self, topology: Any, settings: Any, *, disk_log: bool = True, config_path: str | None = None,
                 host: str = "127.0.0.1", log_dir: str | None = None, coordinate: bool = True) -> None:
        """`coordinate`: listen for drain reports (a replay's wait_drained); a live run has no end
        to wait for, and an idle subscriber of this process would not follow a restarted broker
        (libzmq re-subscribes when the owning thread next uses the socket)."""
        self.coordinate = coordinate
        self.topology = topology
        self.settings = settings
        self.disk_log = disk_log
        self.receiver = f"tcp://{host}:{free_port(host)}"
        self.sender = f"tcp://{host}:{free_port(host)}"
        self.procs: dict[str, subprocess.Popen] = {}
        self._args: dict[str, list[str]] = {}
        #: Process label -> the components it runs.
        self.groups: dict[str, list[str]] = {}
        self._dir = tempfile.mkdtemp(prefix="analytics-topology-")
        self.log_dir = Path(log_dir or self._dir)
        self.spec_path = Path(self._dir, "topology.json")
        self.spec_path.write_text(json.dumps({"topology": topology.to_json(), "settings": _settings_json(settings)}))
        self.coordinator = None
        self._zmq = None

    def _spawn(self, name: str, args: list[str]) -> None:
        out = open(self.log_dir / f"{name}.log", "ab")
        cmd = [sys.executable, "-m", "analytics.processes", *args, "--spec", str(self.spec_path),
               "--receiver", self.receiver, "--sender", self.sender]
        self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=os.getcwd())
        self._args[name] = args

    def restart(self, name: str) -> None:
        """Start process `name` ('broker', a component or a worker label) again, as a supervisor
        would after it died (it is killed first if it still runs)."""
        p = self.procs[name]
        if p.poll() is None:
            p.kill()
            p.wait()
        self._spawn(name, self._args[name])

    def start(self, ready_timeout: float = 30) -> "ProcessRunner":
        """Broker first, then the coordinator and bolts, then (once all are subscribed) the spouts.

        With settings.workers = N the components run in N worker processes grouped by
        stage (topology.worker_groups) instead of one process each.
        """
        from analytics.runners import COORDINATOR, Coordinator
        from analytics.topology import worker_groups
        from analytics.transport import new_context
        self._spawn("broker", ["broker", "--expect",
                               ",".join(self.topology.bolts + ([COORDINATOR] if self.coordinate else []))])
        self._zmq = new_context(self.settings)
        if self.coordinate:
            self.coordinator = Coordinator(self._zmq, self.sender, self.topology, hwm=self.settings.broker.hwm)
        workers = self.settings.workers
        groups = worker_groups(self.topology, workers) if workers else \
            [[n] for n in self.topology.bolts] + [[n] for n in self.topology.spouts]
        for i, names in enumerate(groups):
            label = names[0] if len(names) == 1 else f"worker{i}"
            self._spawn(label, ["component", ",".join(names)] + ([] if self.disk_log else ["--no-disk-log"]))
            self.groups[label] = names
        return self

    def wait_drained(self, timeout: float | None = None, on_report: Callable[[dict], None] | None = None) -> Any:
        """Wait until every bolt reports drained; a child that dies meanwhile is an error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        import gevent
        waiter = gevent.spawn(self.coordinator.wait, timeout, on_report)
        while not waiter.ready():
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() not in (None, 0)}
            if dead:
                waiter.kill()
                raise RuntimeError(f"component processes died: {dead}; logs in {self.log_dir}")
            if deadline is not None and time.monotonic() > deadline + 1:
                break
            gevent.sleep(0.1)
        return waiter.get()

    def stop(self, timeout: float = 30) -> dict[str, int]:
        """SIGTERM spouts, then bolts, then the broker; SIGKILL what outlives `timeout`."""
        spouts = set(self.topology.spouts)
        with_spouts = [label for label, names in self.groups.items() if spouts & set(names)]
        order = with_spouts + [label for label in self.groups if label not in with_spouts] + ["broker"]
        codes = {}
        for name in order:
            p = self.procs.get(name)
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                codes[name] = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = p.wait()
        if self.coordinator:
            self.coordinator.close()
        if self._zmq is not None:
            self._zmq.destroy(linger=0)
        return codes


def _settings_json(settings: Any) -> dict[str, Any]:
    from dataclasses import asdict
    return asdict(settings)


def _settings_from(data: dict[str, Any]) -> Any:
    from analytics.config import BrokerSettings, GameSettings, Settings
    data = dict(data)
    data["broker"] = BrokerSettings(**data["broker"])
    data["games"] = {k: GameSettings(**v) for k, v in data["games"].items()}
    return Settings(**data)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="analytics.processes")
    ap.add_argument("kind", choices=["broker", "component"])
    ap.add_argument("name", nargs="?", help="a component, or several separated by commas (one worker process)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--spec", help="topology + settings JSON written by ProcessRunner")
    src.add_argument("--config", help="TOML configuration: the default topology and settings.broker endpoints")
    ap.add_argument("--receiver", help="broker receiver endpoint (default: settings.broker or etcd discovery)")
    ap.add_argument("--sender", help="broker sender endpoint (default: settings.broker or etcd discovery)")
    ap.add_argument("--expect", default=None, help="comma-separated subscribers the broker waits for")
    ap.add_argument("--instance", type=int, default=None, help="instance number of a partitioned bolt")
    ap.add_argument("--log-file", help="append log lines here (daemons); stderr gets none then")
    ap.add_argument("--no-disk-log", action="store_true")
    args = ap.parse_args(argv)
    if args.kind == "component" and not args.name:
        ap.error("component needs a NAME")
    return args


def _endpoints(settings: Any, args: argparse.Namespace, discover: bool) -> tuple[str, str]:
    """Broker endpoints: the command line, else etcd discovery (when asked or unset), else settings."""
    receiver = args.receiver or settings.broker.receiver
    sender = args.sender or settings.broker.sender
    if discover and not (args.receiver and args.sender):
        from analytics.cluster import discover_broker
        wait = float(settings.extra.get("cluster", {}).get("discover_timeout", 60))
        found = discover_broker(settings, timeout=wait)
        log.info("discovered broker in etcd: receiver %s, sender %s", found["receiver"], found["sender"])
        receiver, sender = found["receiver"], found["sender"]
    if not receiver or not sender:
        raise SystemExit("error: no broker endpoints: set [broker] receiver/sender or etcd with [cluster] discover")
    return receiver, sender


def main(argv: list[str] | None = None) -> int:
    """Entry point of one child process: `broker` or `component NAME [--instance N]`.

    With --spec (ProcessRunner) the topology and settings come from its JSON file;
    with --config the child loads the TOML itself and runs a component of the
    default topology (`analytics start`). When settings.etcd is set, the broker
    publishes its endpoints and every component registers as a node (losing etcd
    never stops the data path); a bolt with `instances > 1` takes only the
    partitions a PartitionAssigner gives it.
    """
    from gevent import monkey
    monkey.patch_all()

    from dataclasses import replace

    from analytics.config import ConfigError
    from analytics.logs import setup_logging
    from analytics.topology import Topology, default_topology
    from analytics.transport import check_broker, new_context

    args = _parse_args(argv)
    names = args.name.split(",") if args.kind == "component" else []
    if args.kind == "broker":
        label = "broker"
    elif len(names) > 1:
        label = f"worker({names[0]}+{len(names) - 1})"
    else:
        label = args.name + ("" if args.instance is None else f"#{args.instance}")
    setup_logging(os.environ.get("ANALYTICS_LOG_LEVEL", "INFO"), file=args.log_file,
                  stderr=args.log_file is None, component=label)
    if args.spec:
        spec = json.loads(Path(args.spec).read_text())
        settings = _settings_from(spec["settings"])
        topology = None
    else:
        from analytics.config import load_settings
        settings = load_settings(args.config)
        spec = None
        topology = default_topology(settings)
    zctx = new_context(settings)
    try:  # a missing key file or a bind in the clear: one line and exit 2, not a traceback
        if zctx.keys is not None and args.kind == "broker":
            zctx.keys.server()
        elif zctx.keys is not None:
            zctx.keys.client()
        if args.kind == "broker":
            check_broker(replace(settings.broker, receiver=args.receiver or settings.broker.receiver,
                                 sender=args.sender or settings.broker.sender))
    except ConfigError as exc:
        log.error("%s: %s", label, exc)
        zctx.destroy(linger=0)
        return 2
    if args.kind == "broker":
        return run_broker(settings, args, topology, zctx)
    if topology is None:
        topology = Topology.from_json(spec["topology"])
    return run_components(settings, args, topology, zctx, names, label)


def run_broker(settings: Any, args: argparse.Namespace, topology: Any, zctx: Any) -> int:
    """The broker process: serve until SIGTERM/SIGINT (publishing its endpoints in etcd when set)."""
    import gevent

    from analytics.broker import Broker
    from analytics.deadletter import DeadLetters
    from analytics.runners import COORDINATOR

    b = settings.broker
    expected = args.expect if args.expect is not None else \
        ",".join(topology.bolts) if topology is not None else ""
    receiver, sender = args.receiver or b.receiver, args.sender or b.sender
    broker = Broker(zctx, receiver, sender, expected=[n for n in expected.split(",") if n],
                    hwm=b.hwm, hold_when_missing=b.wait_for_subscribers,
                    dead_letters=DeadLetters(settings.data_path("deadletter"), "broker"))
    registration = None
    if settings.etcd:
        from analytics.cluster import publish_broker
        registration = publish_broker(settings, {"receiver": broker.receiver_endpoint,
                                                 "sender": broker.sender_endpoint},
                                      stats=lambda: {"counters": broker.stats()})

    def on_term(*_: Any) -> None:
        broker.hold_when_missing = False
        # A second for queued frames to reach the bolts still connected; none left (they are
        # stopped before the broker, and the coordinator has its reports): stop at once.
        live = sorted(n for n, v in broker.ready.items() if v > 0 and n != COORDINATOR)
        log.info("broker: SIGTERM, %s", f"delivering what is queued to {', '.join(live)} and stopping"
                 if live else "no subscriber left, stopping")
        gevent.spawn_later(1.0 if live else 0.0, broker.stop)
    gevent.signal_handler(signal.SIGTERM, on_term)
    gevent.signal_handler(signal.SIGINT, on_term)
    log.info("broker running: receiver %s, sender %s, waiting for %s", broker.receiver_endpoint,
             broker.sender_endpoint, ", ".join(sorted(broker.expected)) or "nobody")
    broker.serve_forever()
    if registration is not None:
        registration.stop()
    log.info("broker stopped: %s", broker.stats())
    zctx.destroy(linger=0)  # and its ZAP handler
    return 0


def run_components(settings: Any, args: argparse.Namespace, topology: Any, zctx: Any, names: list[str],
                   label: str) -> int:
    """A component process (one component, or a worker's group): run them until SIGTERM/SIGINT
    or until one dies with an error (then the others stop too and the exit code is 1)."""
    import gevent

    from analytics.component import Bolt, Context
    from analytics.runners import shared_subscription
    from analytics.store import open_store

    cluster_opts = settings.extra.get("cluster", {}) if isinstance(settings.extra.get("cluster", {}), dict) else {}
    discover = bool(settings.etcd) and (bool(cluster_opts.get("discover", False))
                                         or not (settings.broker.receiver and settings.broker.sender))
    unknown = [n for n in names if n not in topology.specs]
    if unknown:
        raise SystemExit(f"error: no component {', '.join(map(repr, unknown))} in the topology "
                         f"(known: {', '.join(topology.specs)})")
    if len(names) > 1 and args.instance is not None:
        raise SystemExit("error: --instance takes one component, not a group")
    receiver, sender = _endpoints(settings, args, discover)
    any_bolt = any(issubclass(topology.classes[n], Bolt) for n in names)
    store = open_store(settings.store, dedupe_horizon_days=settings.dedupe_horizon_days) if any_bolt else None
    # The worker's bolts share one subscription: each frame is received and decoded once.
    subscriptions = shared_subscription(zctx, sender, settings) if any_bolt else None
    components, registrations = [], []
    for name in names:
        cls = topology.classes[name]
        is_bolt = issubclass(cls, Bolt)
        ctx = Context(settings, zctx, receiver, sender, store=store if is_bolt else None,
                      disk_log=not args.no_disk_log, subscriptions=subscriptions if is_bolt else None,
                      **topology.context_wiring(name, settings))
        holder: dict[str, Any] = {}
        assigner = _assigner(settings, name, args.instance, ctx, holder, cluster_opts, label) \
            if is_bolt and args.instance is not None else None
        component = holder["component"] = cls(ctx, name, **topology.specs[name].options)
        if assigner is not None:
            registrations.append(assigner)
        if settings.etcd:
            from analytics.cluster import start_node
            node = label if len(names) == 1 else name
            registrations.append(start_node(settings, node, cls.role, endpoints={}, stats=component.stats))
        components.append(component)

    def on_term(*_: Any) -> None:
        log.info("%s: stopping (flushing what it holds)", label)
        for c in components:
            c.stop()
    gevent.signal_handler(signal.SIGTERM, on_term)
    gevent.signal_handler(signal.SIGINT, on_term)
    log.info("%s running: receiver %s, sender %s", label, receiver, sender)
    greenlets = [gevent.spawn(c.run) for c in components]
    # Never half alive: the first component that dies with an error stops the others (each
    # stores what it holds) and the process exits 1, for its supervisor to restart it.
    while not all(g.dead for g in greenlets):
        gevent.wait(greenlets, count=1 + sum(g.dead for g in greenlets), timeout=1.0)
        crashed = [c.name for c, g in zip(components, greenlets) if g.dead and g.exception is not None]
        if crashed and not all(g.dead for g in greenlets):
            log.error("%s: %s died; stopping the rest", label, ", ".join(crashed))
            for c in components:
                c.stop()
            gevent.joinall(greenlets, timeout=30)
            break
    for reg in registrations:
        reg.stop()
    if subscriptions is not None:
        subscriptions.close()
    if store is not None:
        store.close()
    zctx.destroy(linger=5000)
    failed = [f"{c.name}: {g.exception!r}" for c, g in zip(components, greenlets) if not g.successful()]
    code = 1 if failed else 0
    log.info("%s stopped, exit %d%s", label, code, f": {'; '.join(failed)}" if failed else "")
    return code


def _assigner(settings: Any, name: str, instance: int, ctx: Any, holder: dict[str, Any],
              cluster_opts: dict[str, Any], label: str) -> Any:
    """Only this instance's partitions (the same component name: dedupe and membership are shared).

    `holder["component"]` is the bolt once it exists: partitions assigned before that go to ctx.
    """
    from analytics.cluster import PartitionAssigner

    def on_change(owned: set[int]) -> None:
        component_ = holder.get("component")
        if component_ is not None and component_.publisher is not None:
            component_.set_partitions(owned)
        else:
            ctx.partitions = set(owned)
    assigner = PartitionAssigner(settings, name, str(instance), settings.partitions, on_change=on_change).start()
    if not assigner.wait_assigned(float(cluster_opts.get("assign_timeout", 10))):
        log.warning("%s: no partition assignment yet; taking all partitions until one arrives "
                    "(safe: writes are idempotent)", label)
    return assigner


if __name__ == "__main__":
    sys.exit(main())
