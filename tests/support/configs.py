"""The shipped configurations made runnable here: the same tables and options, with this
host's paths, loopback addresses, free ports and an embedded store in place of the
production machines' (tests/integration/test_shipped_configs.py)."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["REPO", "shipped_configs", "readme_config", "localize", "dump_toml"]

REPO = Path(__file__).resolve().parents[2]


def shipped_configs() -> list[Path]:
    """Every configuration file the project ships (deploy/config, the samples' zones)."""
    return sorted(REPO.glob("deploy/config/**/*.toml")) + [REPO / "data" / "samples.toml"]


def readme_config() -> str:
    """The README's Configure example (its one ```toml block)."""
    blocks = re.findall(r"```toml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README should show one configuration example"
    return blocks[0]


def localize(config: dict[str, Any], root: Path, ports: dict[str, int]) -> dict[str, Any]:
    """`config` with every host-specific value made local: paths under `root`, endpoints on
    127.0.0.1 at `ports` ('receiver', 'sender', 'http', 'source'), SQLite, no etcd, and CURVE
    keys (when the config has curve_keys) written once into `root`/curve."""
    c = json.loads(json.dumps(config))
    a = c.setdefault("analytics", {})
    a.update(store=f"sqlite:///{root}/var/analytics.db", data_dir=f"{root}/var", run_dir=f"{root}/var/run",
             etcd="")
    a.pop("mode", None)   # start always runs one daemon per component
    b = c.setdefault("broker", {})
    b.update(receiver=f"tcp://127.0.0.1:{ports['receiver']}", sender=f"tcp://127.0.0.1:{ports['sender']}")
    if b.get("curve_keys"):  # the keys of every host of the layout, as `analytics keys` writes them
        b["curve_keys"] = str(root / "curve")
        if not (root / "curve").exists():
            from analytics.transport import create_keys
            create_keys(root / "curve")
    for name, src in c.get("sources", {}).items():
        if "files" in src:
            src["files"] = [f"{root}/in/{name}*.log"]
        if "http" in src:
            src["http"] = f"http://127.0.0.1:{ports['source']}/{name}"
    if "http" in c:
        c["http"].update(host="127.0.0.1", port=ports["http"])
    return c


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """TOML text of nested tables of scalars and lists (what our configs hold; a dict is a table)."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    out = [f"[{prefix}]"] if prefix and (scalars or not tables) else []
    out += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for k, v in tables.items():
        out.append(dump_toml(v, f"{prefix}.{_key(k)}" if prefix else _key(k)))
    return "\n".join(out) + "\n"


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def load(path_or_text: Path | str) -> dict[str, Any]:
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    return tomllib.loads(text)
