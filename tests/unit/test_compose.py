"""docker-compose.yml cannot run here (no Docker engine), so its shape is checked instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stepstream.streams.settings import VARIABLE_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_has_the_three_services_and_a_worker_with_health_checks() -> None:
    services = compose()["services"]
    assert {"kafka", "postgres", "redis", "worker"} <= set(services)
    for name in ("kafka", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
        assert services["worker"]["depends_on"][name]["condition"] == "service_healthy"
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_worker_environment_uses_exactly_the_settings_variable_names() -> None:
    worker_env = compose()["services"]["worker"]["environment"]
    assert set(worker_env) == VARIABLE_NAMES
    # And every value is one the settings object accepts.
    Settings.from_env({key: str(value) for key, value in worker_env.items()})


def test_worker_is_built_from_the_dockerfile() -> None:
    worker = compose()["services"]["worker"]
    assert worker["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile
    assert worker["command"][0] == "stepstream"


def test_ports_bind_to_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_kafka_answers_containers_and_the_host_on_separate_listeners() -> None:
    kafka = compose()["services"]["kafka"]
    advertised = dict(
        listener.split("://", 1)
        for listener in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    worker_env = compose()["services"]["worker"]["environment"]
    assert worker_env["KAFKA_BOOTSTRAP_SERVERS"] in advertised.values()
    host = [address for address in advertised.values() if address.startswith("127.0.0.1:")]
    assert host == [Settings().kafka_bootstrap_servers]  # what host commands default to
    port = host[0].rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}:{port}" in kafka["ports"]


def test_migrations_run_once_before_the_worker_starts() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["stepstream", "db", "migrate"]
    assert services["migrate"]["environment"] == services["worker"]["environment"]
    condition = services["worker"]["depends_on"]["migrate"]["condition"]
    assert condition == "service_completed_successfully"


def test_the_secured_override_sets_only_settings_variables_that_work_together() -> None:
    from dataclasses import replace

    from stepstream.streams.settings import ENVIRONMENT, check_kafka_security

    secured = yaml.safe_load((ROOT / "docker-compose.secured.yml").read_text())["services"]
    worker_env = secured["worker"]["environment"]
    assert set(worker_env) <= VARIABLE_NAMES
    assert worker_env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert (
        secured["kafka"]["environment"]["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].count("SASL_SSL")
        == 2
    )
    # The files are the container's secrets, not on this machine: parse everything else.
    fields = {name: variable for name, (variable, _) in ENVIRONMENT.items()}
    values = {
        name: str(worker_env[variable])
        for name, variable in fields.items()
        if variable in worker_env
    }
    values["kafka_ssl_check_hostname"] = True
    check_kafka_security(replace(Settings(), **values))
    declared = set(yaml.safe_load((ROOT / "docker-compose.secured.yml").read_text())["secrets"])
    assert {"ca.pem", "kafka-worker-password"} <= declared
