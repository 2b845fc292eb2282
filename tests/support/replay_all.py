"""Replay several gamelog files (one spout per game), payment and syncuser files in one run.

The reference test runs it in-process (`replay_all(plan)`) and as a subprocess it can kill -9
(`python tests/support/replay_all.py plan.json`). A plan is JSON:

    {"store": "sqlite:////tmp/x.db", "data_dir": "/tmp/d", "zones": {"dl": "Asia/Shanghai"},
     "gamelogs": {"dl": ["/tmp/gamelog_dl.txt"]}, "payments": [...], "syncusers": [...],
     "mode": "inproc", "timeout": 600}

`"mode": "tcp"` runs the processes over tcp://127.0.0.1 on free ports, `"workers": N` grouped
into N worker processes (0: one per component).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Mapping

from analytics.app import replay, source_spec
from analytics.config import GameSettings, Settings, load_settings
from analytics.processes import free_port
from analytics.runners import DrainReport
from analytics.topology import ComponentSpec

__all__ = ["settings_of", "specs_of", "replay_all"]


def settings_of(plan: Mapping[str, Any]) -> Settings:
    settings = load_settings(env={}, data_dir=plan["data_dir"], store=plan["store"])
    settings.games = {g: GameSettings(g, tz) for g, tz in plan["zones"].items()}
    settings.mode = plan.get("mode", "inproc")
    settings.workers = plan.get("workers", 0)
    if settings.mode == "tcp":
        settings.broker.receiver = f"tcp://127.0.0.1:{free_port()}"
        settings.broker.sender = f"tcp://127.0.0.1:{free_port()}"
    return settings


def specs_of(settings: Settings, plan: Mapping[str, Any]) -> list[ComponentSpec]:
    specs = [dataclasses.replace(source_spec(settings, "gamelog", files, game), name=f"replay_gamelog_{game}")
             for game, files in sorted(plan["gamelogs"].items())]
    for source, key in (("payment", "payments"), ("syncuser", "syncusers")):
        if plan.get(key):
            specs.append(source_spec(settings, source, plan[key], None))
    return specs


def replay_all(plan: Mapping[str, Any]) -> DrainReport:
    settings = settings_of(plan)
    return replay(settings, specs_of(settings, plan), progress=False, timeout=plan.get("timeout", 600))


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as fh:
        report = replay_all(json.load(fh))
    print(json.dumps(report.totals()))
