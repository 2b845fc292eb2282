"""Layers point one way: the runtime (analytics/) never imports the plugins it runs (spouts/, bolts/).

Checked in a fresh interpreter, so that what other tests imported does not hide an arrow.
Plugins are found through registration (analytics/topology.py names them as strings).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import importlib, pkgutil, sys
import analytics
names = sorted(m.name for m in pkgutil.walk_packages(analytics.__path__, "analytics."))
for name in names:
    importlib.import_module(name)
plugins = sorted(m for m in sys.modules if m.split(".")[0] in ("spouts", "bolts"))
print(len(names))
print(" ".join(plugins))
"""


def test_importing_every_runtime_module_imports_no_spout_and_no_bolt() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=50,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr
    count, plugins = out.stdout.splitlines()
    assert int(count) > 30                   # the walk found the runtime's modules
    assert plugins == "", f"the runtime imported plugin modules: {plugins}"
