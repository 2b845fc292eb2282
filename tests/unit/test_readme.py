"""README.md stays true: its schema section is the collection catalogue, and its commands exist."""
from __future__ import annotations

import re
from pathlib import Path

from analytics.cli import build_parser
from analytics.schema import markdown

ROOT = Path(__file__).resolve().parents[2]


def test_readme_schema_section_matches_the_catalogue():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"<!-- schema:begin -->\n(.*)<!-- schema:end -->", text, re.S)
    assert section, "README.md lacks the schema markers"
    assert section.group(1) == markdown(), "README schema is stale: run `python -m analytics.schema` and paste"


def test_every_analytics_subcommand_in_the_readme_exists():
    text = (ROOT / "README.md").read_text()
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    used = set(re.findall(r"(?<![\w-])analytics (\w+)", text)) - {"is", "a", "uses", "service"}
    assert used <= commands, f"README names commands the CLI lacks: {sorted(used - commands)}"
