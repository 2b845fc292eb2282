"""The committed sample logs (data/*_sample.txt) replayed through the whole topology into a SQLite file,
with the brute-force figures of the same raw lines (tests/support/reference.py) to compare with.

    store_url, expected = replay_sample(tmp_path)
"""
from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

from tests.support import reference
from tests.support.replay_all import replay_all

__all__ = ["DATA", "ZONES", "sample_plan", "replay_sample"]

DATA = Path(__file__).resolve().parents[2] / "data"
#: The sample's games and zones (data/samples.toml).
ZONES: dict[str, str] = {g: v["tz"] for g, v in tomllib.loads((DATA / "samples.toml").read_text())["games"].items()}


def sample_plan(tmp: Path, data: Path = DATA) -> dict[str, Any]:
    """A replay_all plan of the sample files in `data` into tmp/sample.db."""
    return {"store": f"sqlite:///{tmp / 'sample.db'}", "data_dir": str(tmp / "data"), "zones": ZONES,
            "gamelogs": {g: [str(data / f"gamelog_{g}_sample.txt")] for g in ZONES},
            "payments": [str(data / "payment_sample.txt")], "syncusers": [str(data / "syncuser_sample.txt")],
            "timeout": 120}


def replay_sample(tmp: Path, data: Path = DATA) -> tuple[str, dict[str, dict]]:
    """Replay the samples into a fresh store; returns its URL and the reference model's figures."""
    plan = sample_plan(tmp, data)
    report = replay_all(plan)
    assert not report.problems(), report.problems()
    expected = reference.expected(gamelogs={g: [Path(p) for p in ps] for g, ps in plan["gamelogs"].items()},
                                  payments=[Path(p) for p in plan["payments"]],
                                  syncusers=[Path(p) for p in plan["syncusers"]], zones=ZONES, now=time.time())
    return plan["store"], expected
