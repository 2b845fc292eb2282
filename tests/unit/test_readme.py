"""README.md stays true and short; docs/schema.md is the collection catalogue."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from analytics.cli import build_parser
from analytics.schema import all_collections, markdown, write_tables

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_schema_doc_matches_the_catalogue():
    text = (ROOT / "docs" / "schema.md").read_text()
    section = re.search(r"<!-- schema:begin -->\n(.*)<!-- schema:end -->", text, re.S)
    assert section, "docs/schema.md lacks the schema markers"
    assert section.group(1) == markdown(), "docs/schema.md is stale: run `python -m analytics.schema --write docs/schema.md`"
    assert set(re.findall(r"^#### `(\w+)`$", section.group(1), re.M)) == set(all_collections())


def test_the_schema_writer_leaves_a_current_doc_as_it_is(tmp_path):
    copy = tmp_path / "schema.md"
    copy.write_text((ROOT / "docs" / "schema.md").read_text())
    assert write_tables(str(copy)) is False and copy.read_text() == (ROOT / "docs" / "schema.md").read_text()
    copy.write_text("before\n<!-- schema:begin -->\nold\n<!-- schema:end -->\nafter\n")
    assert write_tables(str(copy)) is True
    assert copy.read_text() == f"before\n<!-- schema:begin -->\n{markdown()}<!-- schema:end -->\nafter\n"


@pytest.mark.parametrize("doc", ["collections.md", "timers.md"])
def test_the_collection_docs_name_only_collections_that_are_stored(doc):
    """The prose about single collections (### name, or ### a / b / c) names collections of the catalogue;
    their keys and fields are only in docs/schema.md, generated from it."""
    text = (ROOT / "docs" / doc).read_text()
    section = text.split("\n## Collections\n", 1)[1].split("\n## ", 1)[0]
    named = {n.strip() for h in re.findall(r"^### (.+)$", section, re.M) for n in h.split("/")}
    assert named and named <= set(all_collections()), f"docs/{doc} describes {sorted(named - set(all_collections()))}"


def test_the_readme_is_read_in_five_minutes():
    assert len(README.splitlines()) < 250
    assert "<!-- schema:begin -->" not in README  # the schema is in docs/schema.md


def test_every_analytics_subcommand_in_the_readme_exists():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    used = set(re.findall(r"(?<![\w-])analytics (\w+)", README)) - {"is", "a", "uses", "service"}
    assert used <= commands, f"README names commands the CLI lacks: {sorted(used - commands)}"


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    return [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("line", [x for x in shell_lines() if x.startswith("analytics ")])
def test_every_command_of_the_readme_parses_and_names_files_that_exist(line):
    argv = shlex.split(line)[1:]
    build_parser().parse_args(argv)  # exits 2 on a flag that does not exist
    for arg in argv:
        if "/" in arg and not arg.startswith(("http", "sqlite", "mongodb")):
            assert list(ROOT.glob(arg)), f"{line}: {arg} names no file"


def test_every_file_the_readme_and_docs_name_under_data_exists():
    docs = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "http.md"]  # http.md: another change
    for path in [ROOT / "README.md", *docs, ROOT / "bin" / "read_stdin_gamelog"]:
        for name in re.findall(r"(?<![\w/])data/[\w.*-]+\.(?:txt|toml)", path.read_text()):
            assert list(ROOT.glob(name)), f"{path.name} names {name}, which does not exist"
