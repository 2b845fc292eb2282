"""What a new operator meets on disk: the committed samples in data/, a run's own data apart
(var/, ignored by git), and replays that cannot mix games up."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from analytics.cli import game_in_name, replay_specs
from analytics.config import load_settings

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).resolve().parents[2]


def ignored(path: Path) -> bool:
    rel = path.resolve().relative_to(ROOT) if path.is_absolute() else path
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", str(rel)], cwd=ROOT).returncode == 0


def test_a_runs_data_lives_in_a_directory_of_its_own_that_git_ignores():
    s = load_settings(env={})
    assert Path(s.data_dir).resolve() != (ROOT / "data").resolve()
    assert s.store == f"sqlite:///{s.data_path('analytics.db')}"
    for path in (s.data_path("gamelog_202612051200.txt"), s.data_path("http_202612051200.txt"),
                 s.data_path("payment_202612051200.txt"), s.data_path("deadletter", "gamelog.jsonl"),
                 s.data_path("spoolstate", "gamelog.json"), s.data_path("analytics.db"), s.data_path("demo.db"),
                 Path(s.run_dir, "broker.pid"), Path(s.run_dir, "broker.log")):
        assert ignored(path), f"{path} would show in git status"
    # the committed samples are not ignored, and no glob of the README over data/ meets a run's logs
    assert not ignored(Path("data/gamelog_dl_sample.txt"))


def test_a_data_dir_without_a_store_keeps_the_embedded_store_there(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[analytics]\ndata_dir = "{tmp_path}/d"\n')
    assert load_settings(cfg, env={}).store == f"sqlite:///{tmp_path}/d/analytics.db"
    cfg.write_text(f'[analytics]\ndata_dir = "{tmp_path}/d"\nstore = "sqlite:///x.db"\n')
    assert load_settings(cfg, env={}).store == "sqlite:///x.db"


def test_the_game_in_a_gamelog_files_name_is_checked_against_game():
    s = load_settings(env={})
    assert game_in_name("data/gamelog_wsdx_sample.txt") == "wsdx"
    assert game_in_name("var/gamelog_202612051200.txt") is None   # the disk log's stamp names no game
    with pytest.raises(ValueError, match=r"gamelog_wsdx_sample.txt holds game 'wsdx'.*--game wsdx"):
        replay_specs(s, [str(ROOT / "data" / "gamelog_*.txt")], None, "dl")


def test_without_game_each_gamelog_file_is_replayed_as_the_game_its_name_records():
    s = load_settings(env={})
    specs = replay_specs(s, [str(ROOT / "data" / "*_sample.txt")], None, None)
    games = {spec.name: (spec.options.get("game"), [Path(f).name for f in spec.options["files"]]) for spec in specs}
    assert games == {"replay_gamelog_dl": ("dl", ["gamelog_dl_sample.txt"]),
                     "replay_gamelog_wsdx": ("wsdx", ["gamelog_wsdx_sample.txt"]),
                     "replay_payment": (None, ["payment_sample.txt"]),
                     "replay_syncuser": (None, ["syncuser_sample.txt"])}
