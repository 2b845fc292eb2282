"""A new statistic is one file plus one registration line (analytics/topology.py DEFAULT_COMPONENTS).

What else names the statistics follows from that line or is checked against it, here and in
the tests named below, so that a forgotten place fails loudly instead of silently:
- the wiring (Topology) and the configuration check load the registry itself;
- the stored collections are the registered bolt modules' COLLECTIONS (analytics.schema);
- docs/schema.md's tables are generated from them (tests/unit/test_readme.py);
- the three-host layout runs components by role (tests/unit/test_service.py);
- the brute-force reference model computes every collection (below, on the committed sample).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from analytics.schema import all_collections
from tests.support import reference
from tests.support.sample_store import ZONES, sample_plan

pytestmark = pytest.mark.timeout(30)


def test_the_reference_model_computes_every_stored_collection_and_no_other(tmp_path):
    plan = sample_plan(tmp_path)
    expected = reference.expected(gamelogs={g: [Path(p) for p in ps] for g, ps in plan["gamelogs"].items()},
                                  payments=[Path(p) for p in plan["payments"]],
                                  syncusers=[Path(p) for p in plan["syncusers"]], zones=ZONES, now=time.time())
    catalogue = set(all_collections())
    assert sorted(catalogue - {name for name, docs in expected.items() if docs}) == [], \
        "tests/support/reference.py has no figures for these collections"
    assert sorted(set(expected) - catalogue) == [], "the reference model computes collections nothing stores"
