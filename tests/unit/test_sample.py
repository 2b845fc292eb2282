"""analytics.sample: deterministic, every op code, duplicates and malformed lines."""
from __future__ import annotations

import json

import pytest

from analytics.sample import OPNO, generate

pytestmark = pytest.mark.timeout(30)


def test_same_arguments_same_bytes_and_every_op_code(tmp_path):
    a = generate(tmp_path / "a", seed=3, days=2, users=30)
    b = generate(tmp_path / "b", seed=3, days=2, users=30)
    assert sorted(a.files) == ["gamelog_dl_sample.txt", "gamelog_wsdx_sample.txt", "payment_sample.txt",
                               "syncuser_sample.txt"]
    for name in a.files:
        assert a.files[name].read_bytes() == b.files[name].read_bytes()
    lines = a.files["gamelog_dl_sample.txt"].read_text().splitlines()
    assert len(lines) == a.lines["gamelog_dl_sample.txt"]
    codes, bad = set(), 0
    for line in lines:
        try:
            codes.add(json.loads(line)["op"]["code"])
        except (ValueError, KeyError):
            bad += 1
    assert codes == set(OPNO)
    assert bad == 1                                   # 'not json at all'; two more are JSON but invalid
    assert len(lines) > len(set(lines))               # exact duplicate lines
    pay = [json.loads(x) for x in a.files["payment_sample.txt"].read_text().splitlines() if '"users":{' in x]
    assert pay[-1] in pay[:-1]                        # a late re-report of an earlier snapshot
