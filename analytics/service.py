"""`analytics start|stop|restart|status`: the topology as daemonised processes on this host.

Each process is `python -m analytics.processes broker|component NAME --config FILE`
(one per component, plus the broker), started in its own session with
``<run_dir>/<name>.pid`` and ``<run_dir>/<name>.log``. A bolt with
``instances = N`` under ``[components.<name>]`` runs as ``name#0 .. name#N-1``.

Which processes this host runs comes from the optional ``[service]`` table:

    [service]
    broker = true                       # run the broker here (default true)
    expect = ["loginhour"]              # bolts the broker waits for (default: every bolt)
    components = ["gamelog", "payment"] # these components...
    roles = ["bolt"]                    # ...and every component of these roles ("spout", "bolt")
                                        # (neither: every component of the topology)

and the command line can narrow it further (``analytics start loginhour broker``).

* start: broker, then bolts, then spouts; a live pid file means "already running"
  (nothing is started twice), a stale one is replaced. It then waits for every new
  process to be ready (its log says `<name> running:`) or to die, up to `[service]
  start_timeout` seconds, and exits 1 naming each one that died or is not ready, with
  the last line of its log. It needs a configuration file (no spout can run without
  its sources).
* stop: SIGTERM to the spouts, then the bolts (they flush what they hold), then the
  broker; each group gets `timeout` seconds before SIGKILL. Pid files are removed.
* status: the pid-file view (name, pid, alive, uptime, log); exit 1 if one is down.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from analytics.config import ConfigError, Settings

__all__ = ["Proc", "plan", "check_security", "start", "stop", "restart", "local_status", "is_running", "read_pid"]

log = logging.getLogger(__name__)

#: Seconds `start` waits for its new processes to be ready ([service] start_timeout): 29
#: processes importing gevent, zmq and the store on 2 busy cores take 5-15 s.
START_TIMEOUT = 90.0
#: What a process logs once it is built (options checked, store open, sockets connected,
#: registered in etcd when configured): `<name> running: ...` (analytics.processes).
READY_MARK = " running: "
#: Seconds `start` looks again after every process is ready, for one that died right after.
SETTLE_SECONDS = 1.0
#: What a live child's command line contains (guards against a recycled pid).
CHILD_MARK = "analytics.processes"


@dataclass(frozen=True)
class Proc:
    """One process of the topology on this host."""
    #: Pid/log file stem: 'broker', 'loginhour', 'loginhour#1'.
    name: str
    #: 'broker', 'spout' or 'bolt' (decides the stop order).
    role: str
    #: Arguments after `python -m analytics.processes`.
    args: tuple[str, ...]


#: The keys of [service] (the configuration check names any other with the closest of these).
SERVICE_OPTIONS = ("broker", "components", "expect", "roles", "start_timeout")


def _service_options(settings: Settings) -> dict[str, Any]:
    opts = settings.extra.get("service", {})
    if not isinstance(opts, dict):
        raise ConfigError(f"[service] must be a table, not {opts!r}")
    return opts


def _wanted(topology: Any, opts: dict[str, Any]) -> list[str]:
    """The components [service] names: `components`, plus every component of a role in `roles`
    (a host by role follows the registry: a new bolt runs on the bolt host with no edit there);
    every component when neither is set."""
    named, roles = opts.get("components"), opts.get("roles")
    if named is None and roles is None:
        return list(topology.specs)
    named = list(named or [])
    unknown = [n for n in named if n not in topology.specs]
    if unknown:
        raise ConfigError(f"[service] components: unknown component(s) {', '.join(unknown)} "
                          f"(known: {', '.join(topology.specs)})")
    known_roles = {c.role for c in topology.classes.values()}
    if not isinstance(roles, (list, type(None))) or any(r not in known_roles for r in roles or []):
        raise ConfigError(f"[service] roles must be a list of {', '.join(map(repr, sorted(known_roles)))}, "
                          f"not {roles!r}")
    return named + [n for n, c in topology.classes.items() if c.role in (roles or []) and n not in named]


def plan(settings: Settings, only: Sequence[str] | None = None) -> list[Proc]:
    """The processes to start on this host, in start order (broker, bolts, spouts).

    `only` narrows to some names: 'broker', a component ('loginhour': all its
    instances) or one instance ('loginhour#1').
    """
    from analytics.topology import default_topology
    topology = default_topology(settings)
    opts = _service_options(settings)
    wanted = _wanted(topology, opts)
    procs: list[Proc] = []
    if opts.get("broker", True):
        expect = opts.get("expect")
        if expect is not None:
            bad = [n for n in expect if n not in topology.bolts]
            if bad:
                raise ConfigError(f"[service] expect: not bolts of the topology: {', '.join(map(str, bad))}")
        procs.append(Proc("broker", "broker", ("broker",) if expect is None else ("broker", "--expect", ",".join(expect))))
    for name in topology.bolts + topology.spouts:
        if name not in wanted:
            continue
        role = "bolt" if name in topology.bolts else "spout"
        instances = settings.component(name).get("instances", 1)
        if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
            raise ConfigError(f"[components.{name}] instances must be an integer >= 1, not {instances!r}")
        if role == "spout" and instances != 1:
            raise ConfigError(f"[components.{name}] instances: only bolts can run several instances")
        if instances == 1:
            procs.append(Proc(name, role, ("component", name)))
        else:
            procs.extend(Proc(f"{name}#{i}", role, ("component", name, "--instance", str(i)))
                         for i in range(instances))
    if only:
        known = {p.name for p in procs} | {p.name.split("#")[0] for p in procs}
        missing = [n for n in only if n not in known]
        if missing:
            raise ConfigError(f"not run on this host: {', '.join(missing)} "
                              f"(this host runs: {', '.join(p.name for p in procs) or 'nothing'})")
        procs = [p for p in procs if p.name in only or p.name.split("#")[0] in only]
    return procs


# -- pid files ----------------------------------------------------------------------------
def _run_dir(settings: Settings) -> Path:
    return Path(settings.run_dir)


def pid_path(settings: Settings, name: str) -> Path:
    return _run_dir(settings) / f"{name}.pid"


def log_path(settings: Settings, name: str) -> Path:
    return _run_dir(settings) / f"{name}.log"


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None if it is missing or unreadable."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def is_running(pid: int | None) -> bool:
    """Whether `pid` is a live (not zombie) process of ours (its command line names analytics.processes)."""
    if not pid or pid <= 0:
        return False
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            return CHILD_MARK in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def _log_since(path: Path, offset: int) -> str:
    """What a process wrote to its log after `offset` (the size the log had when it was spawned)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def last_log_line(path: Path, offset: int = 0) -> str:
    """The last non-blank line a process logged since `offset` (a traceback's last line is its error)."""
    lines = [line.strip() for line in _log_since(path, offset).splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing logged)"


# -- start --------------------------------------------------------------------------------
def _spawn(settings: Settings, proc: Proc) -> tuple[int, int]:
    """Start one daemon; (pid, size of its log before it started)."""
    logfile = log_path(settings, proc.name)
    config = str(Path(settings.path).resolve()) if settings.path else ""
    cmd = [sys.executable, "-m", "analytics.processes", *proc.args, "--config", config,
           "--log-file", str(logfile.resolve())]
    env = dict(os.environ)
    if logging.getLevelName(env.get("ANALYTICS_LOG_LEVEL", "INFO").upper()) not in (logging.DEBUG, logging.INFO):
        env["ANALYTICS_LOG_LEVEL"] = "INFO"  # the readiness line is logged at INFO
    with open(logfile, "ab") as out:
        offset = out.tell()
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, close_fds=True,
                                 start_new_session=True, cwd=os.getcwd(), env=env)
    child.returncode = 0  # not ours to wait for: the daemon outlives this command (no ResourceWarning)
    _write_pid(pid_path(settings, proc.name), child.pid)
    return child.pid, offset


def _start_timeout(settings: Settings) -> float:
    value = _service_options(settings).get("start_timeout", START_TIMEOUT)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"[service] start_timeout must be a number of seconds > 0, not {value!r}")
    return float(value)


def check_security(settings: Settings, procs: Sequence[Proc]) -> None:
    """Before anything starts: the broker does not bind in the clear off loopback, and this
    host has the CURVE key files its processes read (a ConfigError now, not a daemon's log)."""
    from analytics.transport import CurveKeys, check_broker
    broker = any(p.role == "broker" for p in procs)
    if broker:
        check_broker(settings.broker)
    if settings.broker.curve_keys:
        keys = CurveKeys(settings.broker.curve_keys)
        if broker:
            keys.server()
        if any(p.role != "broker" for p in procs):
            keys.client()


def start(settings: Settings, only: Sequence[str] | None = None, out: Any = None) -> int:
    """Start what is not running and wait until each new process is ready or dead.

    0 when every process runs and is ready; 1 naming each one that died or did not get
    ready within [service] start_timeout, with the last line of its log.
    """
    out = out or sys.stdout
    if not settings.path:
        raise ConfigError("start needs a configuration file: --config FILE or ANALYTICS_CONFIG (the spouts "
                          "need their sources; an annotated example: deploy/config/one-host.toml)")
    procs = plan(settings, only)
    check_security(settings, procs)
    timeout = _start_timeout(settings)
    _run_dir(settings).mkdir(parents=True, exist_ok=True)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    started: dict[str, tuple[Proc, int, int]] = {}
    for proc in procs:
        path = pid_path(settings, proc.name)
        pid = read_pid(path)
        if is_running(pid):
            print(f"{proc.name}: already running (pid {pid})", file=out)
            continue
        if path.exists():
            log.info("%s: stale pid file (pid %s) replaced", proc.name, pid)
            path.unlink(missing_ok=True)
        pid, offset = _spawn(settings, proc)
        started[proc.name] = (proc, pid, offset)
    if not started:
        return 0
    t0 = time.monotonic()
    waiting = dict(started)
    dead: list[str] = []
    while waiting and time.monotonic() - t0 < timeout:
        for name, (proc, pid, offset) in list(waiting.items()):
            logfile = log_path(settings, name)
            if not is_running(pid):
                dead.append(name)
                del waiting[name]
                pid_path(settings, name).unlink(missing_ok=True)
                print(f"{name}: FAILED (pid {pid} exited): {last_log_line(logfile, offset)}  [log {logfile}]",
                      file=out)
            elif name + READY_MARK in _log_since(logfile, offset):
                del waiting[name]
                print(f"{name}: started (pid {pid}, ready in {time.monotonic() - t0:.1f}s), log {logfile}",
                      file=out)
        if waiting:
            time.sleep(0.2)
    for name, (proc, pid, offset) in waiting.items():
        logfile = log_path(settings, name)
        print(f"{name}: NOT READY after {timeout:g}s (pid {pid} still running): "
              f"{last_log_line(logfile, offset)}  [log {logfile}]", file=out)
    # A process can die just after it is ready (an HTTP port in use is bound in its run loop):
    # look once more after a moment.
    if not dead and not waiting:
        time.sleep(SETTLE_SECONDS)
    for name, (proc, pid, offset) in started.items():
        if name not in dead and name not in waiting and not is_running(pid):
            dead.append(name)
            pid_path(settings, name).unlink(missing_ok=True)
            print(f"{name}: FAILED (pid {pid} exited after it was ready): "
                  f"{last_log_line(log_path(settings, name), offset)}  [log {log_path(settings, name)}]", file=out)
    failed = [name for name in started if name in dead or name in waiting]  # in start order
    if failed:
        print(f"{len(started) - len(failed)} of {len(started)} started; failed: {', '.join(failed)}", file=out)
    return 1 if failed else 0


# -- stop ---------------------------------------------------------------------------------
def _stop_groups(settings: Settings, only: Sequence[str] | None) -> list[list[str]]:
    """Names to stop: spouts, then bolts, then the broker (plus stray pid files when stopping all)."""
    procs = plan(settings, only)
    groups = [[p.name for p in procs if p.role == r] for r in ("spout", "bolt", "broker")]
    if not only and _run_dir(settings).is_dir():
        known = {p.name for p in procs}
        stray = sorted(f.stem for f in _run_dir(settings).glob("*.pid") if f.stem not in known)
        for name in stray:  # e.g. instances of a configuration changed since start: stop with the bolts
            (groups[2] if name == "broker" else groups[0] if name in ("gamelog", "payment", "syncuser")
             else groups[1]).append(name)
    return groups


def stop(settings: Settings, only: Sequence[str] | None = None, timeout: float = 30.0, out: Any = None) -> int:
    """SIGTERM in order, SIGKILL after `timeout` per group; 0 if everything exited on SIGTERM."""
    out = out or sys.stdout
    killed = False
    for group in _stop_groups(settings, only):
        live: dict[str, int] = {}
        for name in group:
            path = pid_path(settings, name)
            pid = read_pid(path)
            if is_running(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                    live[name] = pid
                except ProcessLookupError:
                    path.unlink(missing_ok=True)
            else:
                if path.exists():
                    path.unlink(missing_ok=True)
                    print(f"{name}: not running (stale pid file removed)", file=out)
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        while live and time.monotonic() < deadline:
            for name, pid in list(live.items()):
                if not is_running(pid):
                    del live[name]
                    pid_path(settings, name).unlink(missing_ok=True)
                    print(f"{name}: stopped (pid {pid}, {time.monotonic() - t0:.1f}s)", file=out)
            if live:
                time.sleep(0.1)
        for name, pid in live.items():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed = True
            pid_path(settings, name).unlink(missing_ok=True)
            print(f"{name}: KILLED (pid {pid}) after {timeout:g}s without exiting; "
                  f"what it held is in the disk logs: replay them", file=out)
    return 1 if killed else 0


def restart(settings: Settings, only: Sequence[str] | None = None, timeout: float = 30.0,
            out: Any = None) -> int:
    """stop + start."""
    code = stop(settings, only, timeout, out)
    return max(code, start(settings, only, out))


def started_here(settings: Settings, only: Sequence[str] | None = None) -> list[str]:
    """The processes of this host's plan that `start` started and `stop` has not stopped (pid files)."""
    if not _run_dir(settings).is_dir():
        return []
    return [p.name for p in plan(settings, only) if pid_path(settings, p.name).exists()]


# -- status -------------------------------------------------------------------------------
def _fmt_age(seconds: float) -> str:
    """3m05s, 1h02m, 2d04h."""
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def local_status(settings: Settings, only: Sequence[str] | None = None, as_json: bool = False) -> tuple[str, int]:
    """The pid-file view of this host: (text, exit code 0 all running / 1 one is not)."""
    rows = []
    now = time.time()
    for proc in plan(settings, only):
        path = pid_path(settings, proc.name)
        pid = read_pid(path)
        alive = is_running(pid)
        try:
            uptime = now - path.stat().st_mtime if alive else None
        except OSError:
            uptime = None
        rows.append({"name": proc.name, "role": proc.role, "pid": pid, "alive": alive,
                     "uptime": None if uptime is None else round(uptime, 1),
                     "log": str(log_path(settings, proc.name))})
    down = [r["name"] for r in rows if not r["alive"]]
    code = 1 if down else 0
    if as_json:
        return json.dumps({"ok": not down, "processes": rows, "down": down}, indent=2), code
    table = [("NAME", "ROLE", "PID", "ALIVE", "UPTIME", "LOG")]
    for r in rows:
        table.append((r["name"], r["role"], str(r["pid"] or "-"), "yes" if r["alive"] else "NO",
                      _fmt_age(r["uptime"]) if r["uptime"] is not None else "-", r["log"]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.append(f"{len(rows) - len(down)} of {len(rows)} running" + (f"; down: {', '.join(down)}" if down else ""))
    return "\n".join(lines), code
