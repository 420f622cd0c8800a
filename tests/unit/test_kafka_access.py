"""The Kafka security settings: combinations that cannot work are refused naming the
variable, secrets never show, and every client gets the same options."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepstream.streams.kafka_access import KafkaAccess
from stepstream.streams.settings import Settings, SettingsError

SCRAM = {
    "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "KAFKA_SASL_MECHANISM": "scram-sha-512",
    "KAFKA_SASL_USERNAME": "worker",
    "KAFKA_SASL_PASSWORD": "s3cret-value",
}


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        ({**SCRAM, "KAFKA_SASL_USERNAME": ""}, "KAFKA_SASL_USERNAME"),
        ({**SCRAM, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SSL_CA_FILE": __file__}, "KAFKA_SSL_CA_FILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": __file__}, "KAFKA_SSL_KEY_FILE"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/no/such.pem"},
            "KAFKA_SSL_CA_FILE",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({"STEPSTREAM_MIN_INSYNC_REPLICAS": "3"}, "STEPSTREAM_MIN_INSYNC_REPLICAS"),
    ],
)
def test_a_combination_that_cannot_work_names_its_variable(
    environment: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(environment)


def test_the_password_never_shows(tmp_path: Path) -> None:
    settings = Settings.from_env(SCRAM)
    access = KafkaAccess.from_settings(settings)
    assert "s3cret-value" not in repr(settings) + repr(access)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**SCRAM, "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "none")})
    assert "s3cret-value" not in str(refused.value)


def test_a_password_file_is_read_and_every_client_gets_the_same_options(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    environment = {**SCRAM, "KAFKA_SASL_PASSWORD": "", "KAFKA_SASL_PASSWORD_FILE": str(secret)}
    access = KafkaAccess.from_settings(Settings.from_env(environment))
    options = access.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "from-a-file"
    assert options["ssl_context"] is not None
    faust = access.faust_options()
    assert faust["broker_credentials"].password == "from-a-file"
    assert faust["broker_credentials"].protocol.value == "SASL_SSL"


def test_plaintext_stays_plaintext() -> None:
    options = KafkaAccess("a:1,b:2").client_options()
    assert options["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in options
    assert KafkaAccess("a:1,b:2").faust_options()["broker"] == "kafka://a:1,kafka://b:2"
