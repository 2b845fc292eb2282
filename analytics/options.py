"""What a configuration file may hold, derived from the code that reads it.

A typo must not be ignored (`[analytcs]` falling back to the default store, `flush_evry = 3`
doing nothing), so `check_config` refuses every table and key nobody reads, naming it with
the closest known name. The known names are not a list kept by hand:

* [analytics], [broker], [games.<game>]: the fields of the settings dataclasses;
* [components.<name>] and [sources.<name>]: what the component's class and its bases read
  with ``self.option("name", default)`` (found in their code), plus the names in a
  ``config_options`` class attribute (for an option read some other way) and RUNTIME_OPTIONS
  (read by the runtime on a component's behalf). A new option is one ``self.option(...)``
  call, or one name in ``config_options``: nothing else to update;
* the other tables (TABLES): the keys their readers get with ``<table>.get("key")``, found in
  the readers' code, plus EXTRA_KEYS for a key read some other way.
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import inspect
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from analytics.config import BrokerSettings, ConfigError, GameSettings, Settings

__all__ = ["check_config", "component_options", "table_keys", "closest", "TABLES", "RUNTIME_OPTIONS",
           "EXTRA_KEYS"]

#: Options of [components.<name>] that the runtime reads for the component (not its class).
RUNTIME_OPTIONS = {"instances": "analytics.service: processes of a bolt that divide its partitions"}

#: Tables other than the dataclass-backed and component ones: the modules (files, relative to
#: the import path; globs allowed) that read the table, and the expressions they read it
#: through (`<expression>.get("key")` or `<expression>["key"]`).
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "service": (("analytics/service.py",), ()),   # keys: analytics.service.SERVICE_OPTIONS
    "cluster": (("analytics/cluster.py", "analytics/processes.py"),
                ("_options(settings)", "cluster_opts", 'settings.extra.get("cluster", {})')),
    "http": (("analytics/web/*.py", "spouts/http_intake.py"),
             ("http", "table", "http_table", "self.http_table", 'settings.extra.get("http", {})',
              'self.settings.extra.get("http", {})', 'ctx.settings.extra.get("http", {})', 'settings.extra["http"]',
              'self.settings.extra["http"]')),
    "alerts": (("analytics/alerts.py",), ("table", 'settings.extra.get("alerts", {})')),
}
#: Keys read some other way than TABLES says, by table (one line each).
EXTRA_KEYS: dict[str, set[str]] = {"http": {"read_keys"}, "alerts": set(), "cluster": set()}

_STRUCTURED = {"analytics", "broker", "games", "components", "sources"}


def closest(name: str, known: Iterable[str], fmt: str = "{!r}") -> str:
    """' (did you mean X?)' for the known name nearest to `name`, or '' when none is near."""
    match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {fmt.format(match[0])}?)" if match else ""


def _reads(tree: ast.AST, receivers: Iterable[str] | None) -> set[str]:
    """String keys read in `tree`: self.option("k"), and <receiver>.get("k") / <receiver>["k"]."""
    wanted = {ast.unparse(ast.parse(r, mode="eval").body) for r in receivers or ()}  # one spelling of each
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            target = ast.unparse(node.func.value)
            if receivers is None and node.func.attr == "option" and target == "self":
                keys.add(node.args[0].value)
            elif node.func.attr == "get" and (target in wanted or (receivers is None and target == "self.options")):
                keys.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            target = ast.unparse(node.value)
            if target in wanted or (receivers is None and target == "self.options"):
                keys.add(node.slice.value)
    return keys


@functools.cache
def _class_options(cls: type) -> frozenset[str]:
    names = set(cls.__dict__.get("config_options", ()))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return frozenset(names)
    return frozenset(names | _reads(tree, None))


def component_options(cls: type) -> frozenset[str]:
    """Every option a component class reads (its own code and its bases'), plus RUNTIME_OPTIONS."""
    out: set[str] = set(RUNTIME_OPTIONS)
    for c in cls.__mro__:
        if c is not object:
            out |= _class_options(c)
    return frozenset(out)


def _files(patterns: Iterable[str]) -> list[Path]:
    roots = {Path(importlib.util.find_spec(top).origin).parent.parent  # type: ignore[union-attr, arg-type]
             for top in ("analytics", "spouts") if importlib.util.find_spec(top)}
    return sorted({p for root in roots for pattern in patterns for p in root.glob(pattern)})


@functools.cache
def table_keys(table: str) -> frozenset[str]:
    """The keys of a TABLES table that its readers read (plus EXTRA_KEYS)."""
    if table == "service":
        from analytics.service import SERVICE_OPTIONS
        return frozenset(SERVICE_OPTIONS)
    patterns, receivers = TABLES[table]
    keys = set(EXTRA_KEYS.get(table, ()))
    for path in _files(patterns):
        keys |= _reads(ast.parse(path.read_text(encoding="utf-8")), receivers)
    return frozenset(keys)


def _known_components() -> dict[str, type]:
    from analytics.topology import DEFAULT_COMPONENTS, load_class
    return {name: load_class(path) for name, path in DEFAULT_COMPONENTS}


def _check_keys(where: str, data: Any, known: Iterable[str], what: str = "key") -> list[tuple[str, str]]:
    """(short name, message) of each unknown key of one table."""
    if not isinstance(data, Mapping):
        return [(where, f"{where} must be a table, not {data!r}")]
    known = set(known)
    return [(f"{where} {key}", f"{where}: unknown {what} {key!r}{closest(key, known)}")
            for key in data if key not in known]


def check_config(raw: Mapping[str, Any]) -> None:
    """Raise ConfigError naming every unknown table and key of a parsed configuration file."""
    problems: list[tuple[str, str]] = []
    tables = _STRUCTURED | set(TABLES)
    for name in raw:
        if name not in tables:
            problems.append((f"[{name}]", f"unknown table [{name}]{closest(name, tables, '[{}]')}"))
    settings_fields = {f.name for f in fields(Settings)} - {"broker", "games", "components", "sources", "extra",
                                                            "path"}
    problems += _check_keys("[analytics]", raw.get("analytics", {}), settings_fields, "setting")
    problems += _check_keys("[broker]", raw.get("broker", {}), {f.name for f in fields(BrokerSettings)}, "setting")
    for game, table in (raw.get("games") or {}).items():
        problems += _check_keys(f"[games.{game}]", table, {f.name for f in fields(GameSettings)} - {"name"},
                                "setting")
    if raw.get("components") or raw.get("sources"):
        classes = _known_components()
        spouts = {n: c for n, c in classes.items() if getattr(c, "role", "") == "spout"}
        for name, table in (raw.get("components") or {}).items():
            if name not in classes:
                problems.append((f"[components.{name}]",
                                 f"unknown component [components.{name}]{closest(name, classes)}"))
            else:
                problems += _check_keys(f"[components.{name}]", table, component_options(classes[name]), "option")
        by_source = {**{getattr(c, "source", n): c for n, c in spouts.items()}, **spouts}
        for name, table in (raw.get("sources") or {}).items():
            if name not in by_source:
                problems.append((f"[sources.{name}]", f"unknown source [sources.{name}]{closest(name, by_source)}"))
            else:
                problems += _check_keys(f"[sources.{name}]", table, component_options(by_source[name]), "option")
    for name in TABLES:
        if name in raw:
            problems += _check_keys(f"[{name}]", raw[name], table_keys(name))
    if problems:  # the first in full, the others by name: the error stays one line
        more = f" (and {len(problems) - 1} more: {', '.join(p[0] for p in problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(problems[0][1] + more)
