"""The same toy topology as separate processes over tcp://127.0.0.1 (the seed's test_transfer_data_count)."""
from __future__ import annotations

import pytest

from analytics.config import load_settings
from analytics.processes import ProcessRunner
from analytics.topology import ComponentSpec, Topology

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("workers", [0, 2])
def test_transfer_data_count_across_processes(tmp_path, monkeypatch, workers):
    """workers=0: a process per component; 2: the spout in one worker process, every bolt in another."""
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[2])
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), store=f"sqlite:///{tmp_path}/s.db",
                             workers=workers)
    settings.broker.hwm = 20
    toys = "tests.support.toys"
    topo = Topology([ComponentSpec("src", f"{toys}:ListSpout", {"count": 5000}),
                     ComponentSpec("collect", f"{toys}:CollectBolt"), ComponentSpec("onlya", f"{toys}:OnlyABolt"),
                     ComponentSpec("derived", f"{toys}:DerivedBolt"), ComponentSpec("storesum", f"{toys}:StoreSumBolt")])
    runner = ProcessRunner(topo, settings, log_dir=str(tmp_path)).start()
    assert len(runner.procs) == (6 if workers == 0 else 3)  # with the broker
    try:
        report = runner.wait_drained(60)
    finally:
        codes = runner.stop()
    assert report.problems(topo) == []
    assert report.spouts["src"]["sent"] == {"toy.a": 2500, "toy.b": 2500}
    assert report.bolts["collect"]["received"] == {"toy.a": 2500, "toy.b": 2500}
    assert report.bolts["onlya"]["received"] == {"toy.a": 2500}
    assert report.bolts["derived"]["received"] == {"toy.derived": 5000}
    assert set(codes.values()) == {0}, codes
    from analytics.store import open_store
    with open_store(settings.store) as store:
        assert sorted((d["area"], d["n"]) for d in store.find("toysum")) == [("a0", 1667), ("a1", 1667), ("a2", 1666)]
