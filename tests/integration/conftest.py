"""Integration fixtures. etcd: a real server on 127.0.0.1 (tests/etcd_server.py), skipped with
an install hint when the binary is missing."""
from __future__ import annotations

import uuid

import pytest

from tests.etcd_server import INSTALL_HINT, EtcdServer, find_etcd


def _etcd_or_skip() -> EtcdServer:
    if find_etcd() is None:
        pytest.skip(INSTALL_HINT)
    return EtcdServer().start()


@pytest.fixture(scope="session")
def etcd_server():
    """One etcd for the whole session; tests isolate themselves by cluster name
    (see `etcd_settings`). Do not stop it: use `etcd_private` for outages."""
    server = _etcd_or_skip()
    yield server
    server.close()


@pytest.fixture
def etcd_private():
    """An etcd of this test's own, free to be stopped and started again."""
    server = _etcd_or_skip()
    yield server
    server.close()


def _settings_for(server: EtcdServer, lease_ttl: int = 2):
    from analytics.config import Settings
    return Settings(etcd=server.endpoint, cluster=f"t{uuid.uuid4().hex[:10]}",
                    extra={"cluster": {"lease_ttl": lease_ttl}})


@pytest.fixture
def etcd_settings(etcd_server):
    """Settings pointing at the shared etcd, with a cluster name of this test's own and a 2 s lease TTL."""
    return _settings_for(etcd_server)


@pytest.fixture
def etcd_private_settings(etcd_private):
    """Settings pointing at `etcd_private` (2 s lease TTL)."""
    return _settings_for(etcd_private)
