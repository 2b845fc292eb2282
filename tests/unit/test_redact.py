"""No secret in what people see: config.redact, the log format, the CLI's errors and etcd's TLS options."""
from __future__ import annotations

import logging

import pytest

from analytics.config import ConfigError, Settings, redact

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("text,shown", [
    ("mongodb://admin:s3cr%2Ft@db1:27017,db2:27017/analytics?replicaSet=rs0",
     "mongodb://admin:***@db1:27017,db2:27017/analytics?replicaSet=rs0"),
    ("store mongodb://u:p@h/db; also https://root:pw@etcd1:2379", "store mongodb://u:***@h/db; also https://root:***@etcd1:2379"),
    ("bad MongoDB URL 'mongodb://u:p@h/db': boom", "bad MongoDB URL 'mongodb://u:***@h/db': boom"),
    ("mongodb://h/db?tlsCertificateKeyFilePassword=abc&w=1", "mongodb://h/db?tlsCertificateKeyFilePassword=***&w=1"),
    ("{'user': 'root', 'password': 'hunter2'}", "{'user': 'root', 'password': '***'}"),
    ('{"password": "hunter2", "n": 1}', '{"password": "***", "n": 1}'),
    ("password = hunter2", "password = ***"),
])
def test_passwords_are_masked(text, shown):
    assert redact(text) == shown
    assert "hunter2" not in redact(text) and "s3cr" not in redact(text)


@pytest.mark.parametrize("text", ["sqlite:///var/analytics.db", "mongodb://db1:27017/analytics",
                                  "http://user@host:80/x", "tcp://10.0.0.10:5000", "read 12 accepted 10"])
def test_what_holds_no_secret_is_left_as_it_is(text):
    assert redact(text) == text


def test_log_lines_are_masked_whoever_logs(tmp_path):
    from analytics.logs import setup_logging
    log_file = tmp_path / "a.log"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging("INFO", file=log_file, stderr=False)
        logging.getLogger("pymongo.somewhere").warning("cannot reach %s", "mongodb://app:hunter2@db1/analytics")
        try:
            raise ValueError("bad URL mongodb://app:hunter2@db1/x")
        except ValueError:
            logging.getLogger("x").exception("failed")
        for h in root.handlers:
            h.flush()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    text = log_file.read_text()
    assert "hunter2" not in text and text.count("app:***@db1") == 3  # message, exception line, traceback


def test_a_store_url_password_stays_out_of_the_cli_error(capsys):
    from analytics.cli import main
    assert main(["query", "loginday", "--store", "mangodb://app:hunter2@db1/analytics"]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err and "mangodb://app:***@db1/analytics" in err


def test_the_run_summary_masks_the_store(tmp_path):
    from analytics.app import serving

    class Runner:
        topology = type("T", (), {"spouts": [], "bolts": []})()
        components: dict = {}
    settings = Settings(store="mongodb://app:hunter2@db1/analytics", data_dir=str(tmp_path))
    lines = serving(Runner(), settings)  # type: ignore[arg-type]
    assert "store mongodb://app:***@db1/analytics" in lines[0] and "hunter2" not in "".join(lines)


def test_dead_letter_reasons_are_masked(tmp_path):
    from analytics.deadletter import DeadLetters
    letters = DeadLetters(tmp_path, "x")
    letters.write("raw", "store: mongodb://app:hunter2@db1/x refused")
    letters.close()
    assert "hunter2" not in (tmp_path / "x.jsonl").read_text()


# -- etcd: TLS where etcd3gw has it; no user/password (it has none) ------------------------
def _cluster(etcd: str, **opts) -> Settings:
    return Settings(etcd=etcd, extra={"cluster": opts})


def test_etcd_tls_options_reach_the_client(tmp_path):
    from analytics.cluster import _client
    client = _client(_cluster("https://etcd1:2379", ca_cert="/etc/ssl/etcd-ca.pem", cert_cert="/etc/ssl/me.pem",
                              cert_key="/etc/ssl/me.key"), timeout=1)
    assert client.protocol == "https"
    assert client.session.verify == "/etc/ssl/etcd-ca.pem"
    assert client.session.cert == ("/etc/ssl/me.pem", "/etc/ssl/me.key")
    plain = _client(_cluster("etcd1:2379"), timeout=1)
    assert plain.protocol == "http" and plain.session.cert is None


@pytest.mark.parametrize("etcd,opts,words", [
    ("etcd1:2379", {"ca_cert": "/ca.pem"}, "https://"),
    ("https://etcd1:2379", {"cert_cert": "/me.pem"}, "go together"),
    ("https://etcd1:2379", {"ca_cert": 3}, "file path"),
])
def test_bad_etcd_tls_options_are_config_errors(etcd, opts, words):
    from analytics.cluster import _client
    with pytest.raises(ConfigError, match=words):
        _client(_cluster(etcd, **opts), timeout=1)


def test_an_etcd_password_is_refused_without_showing_it():
    from analytics.cluster import _client
    with pytest.raises(ConfigError) as err:
        _client(_cluster("https://root:hunter2@etcd1:2379"), timeout=1)
    assert "hunter2" not in str(err.value) and "no user or password" in str(err.value)


def test_the_cluster_table_knows_the_tls_keys():
    from analytics.options import table_keys
    assert {"ca_cert", "cert_cert", "cert_key"} <= table_keys("cluster")
