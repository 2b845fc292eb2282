"""Long drills are marked `slow`: a test whose timeout is SLOW_SECONDS or more carries pytest.mark.slow.

`-m "not slow"` is then the quick pass a developer runs; CI runs everything all the same
(scripts/test.sh passes no marker filter). Checked statically, from the test files' marks.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

TESTS = Path(__file__).resolve().parents[1]
#: A timeout at least this long says the test is a long drill.
SLOW_SECONDS = 60


def _marks(node: ast.expr | None) -> list[ast.expr]:
    if node is None:
        return []
    return list(node.elts) if isinstance(node, (ast.List, ast.Tuple)) else [node]


def _timeout(marks: list[ast.expr]) -> int | None:
    for m in marks:
        if isinstance(m, ast.Call) and isinstance(m.func, ast.Attribute) and m.func.attr == "timeout" \
                and m.args and isinstance(m.args[0], ast.Constant):
            return m.args[0].value
    return None


def _slow(marks: list[ast.expr]) -> bool:
    return any(isinstance(m, ast.Attribute) and m.attr == "slow" for m in marks)


def unmarked_long_tests(root: Path = TESTS) -> list[str]:
    """file::test (or file for the module's marks) whose timeout is long and that is not marked slow."""
    out = []
    for path in sorted(root.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module: list[ast.expr] = []
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
                module = _marks(node.value)
        name = str(path.relative_to(root.parent))
        if (_timeout(module) or 0) >= SLOW_SECONDS and not _slow(module):
            out.append(name)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                marks = node.decorator_list
                if (_timeout(marks) or 0) >= SLOW_SECONDS and not (_slow(marks) or _slow(module)):
                    out.append(f"{name}::{node.name}")
    return out


def test_every_test_with_a_long_timeout_is_marked_slow() -> None:
    assert unmarked_long_tests() == []
