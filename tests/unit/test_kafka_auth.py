"""Kafka security settings -> Faust credentials and aiokafka keyword arguments."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.kafka_auth import aiokafka_kwargs, faust_credentials
from streams.settings import Settings


def _settings(**env: str) -> Settings:
    return Settings.from_env({"KAFKA_BROKER": "kafka://k:9092", **env})


def test_plaintext_is_the_default_and_changes_no_client():
    s = _settings()
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert aiokafka_kwargs(s) == {}
    assert faust_credentials(s) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext(mechanism):
    s = _settings(COURSEPULSE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", COURSEPULSE_KAFKA_SASL_MECHANISM=mechanism,
                  COURSEPULSE_KAFKA_SASL_USERNAME="svc", COURSEPULSE_KAFKA_SASL_PASSWORD="pw")
    assert aiokafka_kwargs(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
                                  "sasl_plain_username": "svc", "sasl_plain_password": "pw"}
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    # what Faust hands its own aiokafka clients is what ours get
    assert credentials_to_aiokafka_auth(creds) == {**aiokafka_kwargs(s), "ssl_context": None}


def test_sasl_ssl_with_a_ca_file(tmp_path):
    ca = _self_signed_ca(tmp_path)
    s = _settings(COURSEPULSE_KAFKA_SECURITY_PROTOCOL="SASL_SSL", COURSEPULSE_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                  COURSEPULSE_KAFKA_SASL_USERNAME="svc", COURSEPULSE_KAFKA_SASL_PASSWORD="pw",
                  COURSEPULSE_KAFKA_TLS_CA_FILE=str(ca))
    kwargs = aiokafka_kwargs(s)
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert kwargs["ssl_context"].cert_store_stats()["x509_ca"] == 1
    creds = faust_credentials(s)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_plain_username"] == "svc"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_ssl_with_system_trust_store():
    s = _settings(COURSEPULSE_KAFKA_SECURITY_PROTOCOL="SSL")
    kwargs = aiokafka_kwargs(s)
    assert set(kwargs) == {"security_protocol", "ssl_context"} and kwargs["security_protocol"] == "SSL"
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(creds)["security_protocol"] == "SSL"


@pytest.mark.parametrize(("env", "names"), [
    ({"COURSEPULSE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "COURSEPULSE_KAFKA_SECURITY_PROTOCOL"),
    ({"COURSEPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "COURSEPULSE_KAFKA_SASL_USERNAME": "u",
      "COURSEPULSE_KAFKA_SASL_PASSWORD": "p", "COURSEPULSE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "COURSEPULSE_KAFKA_SASL_MECHANISM"),
    ({"COURSEPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "COURSEPULSE_KAFKA_SASL_USERNAME"),
    ({"COURSEPULSE_KAFKA_TLS_KEY_FILE": "k.pem"}, "COURSEPULSE_KAFKA_TLS_CERT_FILE"),
    ({"COURSEPULSE_END_OFFSET_PROBE": "maybe"}, "COURSEPULSE_END_OFFSET_PROBE"),
    ({"COURSEPULSE_BROKER_LOSS_EXIT_S": "-1"}, "COURSEPULSE_BROKER_LOSS_EXIT_S"),
])
def test_bad_security_settings_name_the_variable(env, names):
    with pytest.raises(ValueError, match=names):
        _settings(**env)


def _self_signed_ca(tmp_path):
    """A self-signed CA certificate in PEM, made with the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a test CA")
    path = tmp_path / "ca.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "ca.key"),
                    "-out", str(path), "-days", "1", "-subj", "/CN=test-ca"], check=True, capture_output=True)
    return path
