"""CURVE settings of the broker without a topology: which binds are refused, `analytics keys`,
and the key files each side reads (the handshakes themselves: tests/integration/test_tcp_curve.py)."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from analytics.broker import Broker
from analytics.cli import main
from analytics.config import BrokerSettings, ConfigError, load_settings
from analytics.transport import CurveKeys, check_bind, check_broker, is_loopback, new_context

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5000", "tcp://127.3.4.5:5000", "tcp://localhost:5000",
                                      "tcp://[::1]:5000", "inproc://receiver"])
def test_loopback_and_inproc_need_no_keys(endpoint):
    check_bind(endpoint, BrokerSettings())


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5000", "tcp://*:5000", "tcp://10.0.0.10:5000",
                                      "tcp://eth0:5000", "tcp://[::]:5000", "tcp://broker.internal:5000"])
def test_a_bind_off_loopback_needs_keys_or_insecure(endpoint):
    assert not is_loopback(endpoint)
    with pytest.raises(ConfigError) as err:
        check_bind(endpoint, BrokerSettings())
    message = str(err.value)
    assert endpoint in message and "curve_keys" in message and "insecure = true" in message
    assert "\n" not in message
    check_bind(endpoint, BrokerSettings(insecure=True))
    check_bind(endpoint, BrokerSettings(curve_keys="/etc/analytics/curve"))


def test_check_broker_looks_at_both_endpoints():
    with pytest.raises(ConfigError, match="tcp://0.0.0.0:5001"):
        check_broker(BrokerSettings(sender="tcp://0.0.0.0:5001"))
    check_broker(BrokerSettings())


def test_the_broker_refuses_to_bind_in_the_clear_before_binding():
    ctx = new_context(load_settings(env={}))
    try:
        with pytest.raises(ConfigError, match="curve_keys"):
            Broker(ctx, "tcp://0.0.0.0:0", "tcp://127.0.0.1:0")
    finally:
        ctx.destroy(linger=0)


def test_curve_keys_and_insecure_are_known_settings_and_typed(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[broker]\ncurve_keys = "keys"\ninsecure = true\n')
    s = load_settings(cfg, env={})
    assert (s.broker.curve_keys, s.broker.insecure) == ("keys", True)
    cfg.write_text('[broker]\ncurve_key = "keys"\n')
    with pytest.raises(ConfigError, match="did you mean 'curve_keys'"):
        load_settings(cfg, env={})
    cfg.write_text('[broker]\ninsecure = "yes"\n')
    with pytest.raises(ConfigError, match="insecure must be true or false"):
        load_settings(cfg, env={})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_analytics_keys_writes_both_pairs_secrets_0600(tmp_path, capsys):
    d = tmp_path / "curve"
    assert main(["keys", str(d)]) == 0
    for name in ("broker", "client"):
        assert _mode(d / f"{name}.key_secret") == 0o600
        assert _mode(d / f"{name}.key") == 0o644
        assert "secret-key" in (d / f"{name}.key_secret").read_text()
        assert "secret-key" not in (d / f"{name}.key").read_text()
    out = capsys.readouterr().out
    assert "broker host" in out and "other hosts: broker.key, client.key and client.key_secret" in out
    keys = CurveKeys(d)
    server_public, _ = keys.server()
    broker_public, client_public, _ = keys.client()
    assert server_public == broker_public != client_public


def test_analytics_keys_keeps_existing_keys_unless_forced(tmp_path, capsys):
    d = tmp_path / "curve"
    assert main(["keys", str(d)]) == 0
    before = (d / "broker.key_secret").read_text()
    assert main(["keys", str(d)]) == 2
    err = capsys.readouterr().err
    assert "already holds broker.key, broker.key_secret" in err and "--force" in err and err.count("\n") == 1
    assert (d / "broker.key_secret").read_text() == before
    assert main(["keys", str(d), "--force"]) == 0
    assert (d / "broker.key_secret").read_text() != before
    assert _mode(d / "broker.key_secret") == 0o600


def test_a_client_only_pair_leaves_the_broker_keys_alone(tmp_path):
    d = tmp_path / "host2"
    assert main(["keys", str(d), "--client-only"]) == 0
    assert sorted(p.name for p in d.iterdir()) == ["client.key", "client.key_secret"]


def test_a_missing_key_file_is_a_config_error_naming_it(tmp_path):
    d = tmp_path / "curve"
    assert main(["keys", str(d)]) == 0
    (d / "broker.key").unlink()  # a client host that did not get the broker's public key
    with pytest.raises(ConfigError, match="broker.key"):
        CurveKeys(d).client()
    CurveKeys(d).server()  # the broker host reads broker.key_secret only


def test_start_refuses_a_clear_bind_off_loopback_with_exit_2(tmp_path, capsys):
    cfg = tmp_path / "broker.toml"
    cfg.write_text(f'[analytics]\nrun_dir = "{tmp_path}/run"\ndata_dir = "{tmp_path}/var"\n'
                   '[broker]\nreceiver = "tcp://0.0.0.0:5000"\n[service]\ncomponents = []\n')
    assert main(["start", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "curve_keys" in err and "insecure" in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "broker.pid").exists()
