"""The catalogue of what flows in and what is stored: the gamelog op codes, and the stored
collections, declared next to the bolts that write them.

Each bolt module has a module-level ``COLLECTIONS = [Collection(...), ...]``;
this module gathers them from the modules of the topology. The query layer uses
it to validate queries and to rebuild the seed's ``userlist`` field from
membership sets; docs/schema.md's tables are written from the same facts
(`python -m analytics.schema --write docs/schema.md`; a test keeps them equal).
"""
from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["GAMELOG_CODES", "Collection", "collections_of", "all_collections"]

#: The gamelog op codes the bolts use (a record's `op.code`); each is published on topic
#: "gamelog.<code>" by the gamelog spout and the HTTP intake, which ignore other codes.
GAMELOG_CODES: tuple[str, ...] = (
    "login_logcount", "signup_logcount", "createrole_logcount", "coin_logchange", "shop_logbuy",
    "fuben_logchange", "trunk_task_accept", "trunk_task_finish", "level_logchange",
)


@dataclass(frozen=True)
class Collection:
    #: Collection (MongoDB) / document kind (SQLite) name, e.g. 'loginday'.
    name: str
    #: The fields that identify one document, e.g. ('game', 'area', 'plat', 'ts').
    key: tuple[str, ...]
    #: Field -> meaning, for docs/schema.md and for people building dashboards.
    fields: dict[str, str] = field(default_factory=dict)
    #: Membership set whose members are this document's `userlist` (None if none).
    userlist_set: str | None = None
    #: Extra key field that maps to MemberKey.sub for userlist (e.g. 'item').
    userlist_sub: str | None = None
    #: What one document is, in a sentence.
    doc: str = ""
    #: Name of the bolt that writes it.
    writer: str = ""


def collections_of(modules: Iterable[str]) -> dict[str, Collection]:
    """Collections declared by the given bolt modules, by name."""
    out: dict[str, Collection] = {}
    for mod in modules:
        for c in getattr(importlib.import_module(mod), "COLLECTIONS", ()):
            out[c.name] = c
    return out


def all_collections() -> dict[str, Collection]:
    """Every collection the default topology writes."""
    from analytics.topology import DEFAULT_COMPONENTS
    return collections_of(sorted({spec.split(":")[0] for _, spec in DEFAULT_COMPONENTS}))


def markdown(collections: dict[str, Collection] | None = None) -> str:
    """The schema tables of docs/schema.md: every collection, its key, fields and their meaning."""
    collections = collections if collections is not None else all_collections()
    out = []
    for name in sorted(collections):
        c = collections[name]
        extra = f"; `userlist` from set `{c.userlist_set}`" if c.userlist_set else ""
        out.append(f"#### `{name}`\n{c.doc} (written by `{c.writer}`). Key: "
                   f"{', '.join(f'`{k}`' for k in c.key)}{extra}.\n")
        out.append("| field | meaning |\n|---|---|")
        for f, meaning in c.fields.items():
            out.append(f"| `{f}` | {meaning.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


#: The markers around the generated tables in docs/schema.md.
BEGIN, END = "<!-- schema:begin -->\n", "<!-- schema:end -->"


def write_tables(path: str) -> bool:
    """Rewrite the tables between the markers of `path` (docs/schema.md); True if they changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"error: {path} has no {BEGIN.strip()} ... {END} markers")
    new = pattern.sub(lambda _: BEGIN + markdown() + END, text, count=1)
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        print(f"{sys.argv[2]}: {'rewritten' if write_tables(sys.argv[2]) else 'already current'}")
    else:
        print(markdown(), end="")
