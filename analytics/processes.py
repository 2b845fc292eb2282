"""Multi-process mode: the broker and every component in its own process over tcp.

`python -m analytics.processes broker|component ...` is what each child runs;
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

__all__ = ["ProcessRunner", "free_port", "main"]

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ProcessRunner:
    """Runs a topology as separate processes on this host; the parent coordinates the drain."""

    def __init__(self, topology: Any, settings: Any, *, disk_log: bool = True, config_path: str | None = None,
                 host: str = "127.0.0.1", log_dir: str | None = None) -> None:
        self.topology = topology
        self.settings = settings
        self.disk_log = disk_log
        self.receiver = f"tcp://{host}:{free_port(host)}"
        self.sender = f"tcp://{host}:{free_port(host)}"
        self.procs: dict[str, subprocess.Popen] = {}
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

    def start(self, ready_timeout: float = 30) -> "ProcessRunner":
        """Broker first, then the coordinator and bolts, then (once all are subscribed) the spouts."""
        from analytics.topology import COORDINATOR, Coordinator
        from analytics.transport import new_context
        self._spawn("broker", ["broker", "--expect", ",".join(self.topology.bolts + [COORDINATOR])])
        self._zmq = new_context()
        self.coordinator = Coordinator(self._zmq, self.sender, self.topology, hwm=self.settings.broker.hwm)
        for name in self.topology.bolts:
            self._spawn(name, ["component", name] + ([] if self.disk_log else ["--no-disk-log"]))
        for name in self.topology.spouts:
            self._spawn(name, ["component", name] + ([] if self.disk_log else ["--no-disk-log"]))
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
        order = self.topology.spouts + self.topology.bolts + ["broker"]
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of one child process: `broker` or `component NAME`."""
    from gevent import monkey
    monkey.patch_all()
    import gevent

    from analytics.broker import Broker
    from analytics.component import Bolt, Context
    from analytics.logs import setup_logging
    from analytics.store import open_store
    from analytics.topology import Topology
    from analytics.transport import new_context

    ap = argparse.ArgumentParser(prog="analytics.processes")
    ap.add_argument("kind", choices=["broker", "component"])
    ap.add_argument("name", nargs="?")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--receiver", required=True)
    ap.add_argument("--sender", required=True)
    ap.add_argument("--expect", default="")
    ap.add_argument("--no-disk-log", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(os.environ.get("ANALYTICS_LOG_LEVEL", "INFO"))
    spec = json.loads(Path(args.spec).read_text())
    settings = _settings_from(spec["settings"])
    zctx = new_context()
    if args.kind == "broker":
        b = settings.broker
        broker = Broker(zctx, args.receiver, args.sender, expected=[n for n in args.expect.split(",") if n],
                        hwm=b.hwm, hold_when_missing=b.wait_for_subscribers)

        def on_term(*_: Any) -> None:
            broker.hold_when_missing = False
            gevent.spawn_later(1.0, broker.stop)
        gevent.signal_handler(signal.SIGTERM, on_term)
        broker.serve_forever()
        log.info("broker stopped: %s", broker.stats())
        return 0
    topology = Topology.from_json(spec["topology"])
    spec_ = topology.specs[args.name]
    cls = topology.classes[args.name]
    store = open_store(settings.store, dedupe_horizon_days=settings.dedupe_horizon_days) \
        if issubclass(cls, Bolt) else None
    ctx = Context(settings, zctx, args.receiver, args.sender, store=store,
                  expected_barriers=topology.expected_barriers(args.name) if issubclass(cls, Bolt) else frozenset(),
                  disk_log=not args.no_disk_log)
    component = cls(ctx, args.name, **spec_.options)
    gevent.signal_handler(signal.SIGTERM, component.stop)
    gevent.signal_handler(signal.SIGINT, component.stop)
    g = gevent.spawn(component.run)
    g.join()
    if store is not None:
        store.close()
    zctx.destroy(linger=5000)
    return 0 if g.successful() else 1


if __name__ == "__main__":
    sys.exit(main())
