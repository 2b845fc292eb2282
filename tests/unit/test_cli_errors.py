"""The CLI's error line (analytics.cli.brief): the cause, one line, bounded."""
from __future__ import annotations

import pytest

from analytics.cli import ERROR_WIDTH, brief

pytestmark = pytest.mark.timeout(10)

PYMONGO = ("mongodb setup: 127.0.0.1:1: [Errno 111] Connection refused (configured timeouts: socketTimeoutMS: "
           "20000.0ms, connectTimeoutMS: 20000.0ms), Timeout: 0.5s, Topology Description: <TopologyDescription "
           "id: 6b13, topology_type: Unknown, servers: [<ServerDescription ('127.0.0.1', 1) server_type: Unknown, "
           "rtt: None, error=AutoReconnect('127.0.0.1:1: [Errno 111] Connection refused')>]>")


def test_a_drivers_diagnostics_are_left_out():
    assert brief(PYMONGO) == "mongodb setup: 127.0.0.1:1: [Errno 111] Connection refused"


def test_long_or_multi_line_messages_become_one_bounded_line():
    line = brief("first line\nsecond " + "x" * 1000)
    assert "\n" not in line and len(line) == ERROR_WIDTH and line.endswith("…")
    assert brief("short (kept: a remark in brackets)") == "short (kept: a remark in brackets)"
