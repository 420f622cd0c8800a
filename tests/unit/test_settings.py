"""The settings object: documented defaults, and bad values named at start-up."""

from __future__ import annotations

import pytest

from stepstream.streams.settings import VARIABLE_NAMES, Settings, SettingsError


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings.from_env({})
    assert settings.cache_enabled is True
    assert settings.cache_ttl_ms == 3_600_000
    assert settings.ai_response_cache_ttl_ms == 300_000
    assert settings.rate_limit_enabled is True
    assert settings.rate_limit_points == 10
    assert settings.rate_limit_window_seconds == 60
    assert settings.parallel_execution_enabled is True
    assert settings.max_parallel_steps == 10


def test_every_architecture_variable_is_read() -> None:
    documented = {
        "WORKFLOW_CACHE_ENABLED",
        "WORKFLOW_CACHE_TTL_MS",
        "AI_RESPONSE_CACHE_TTL_MS",
        "WORKFLOW_RATE_LIMIT_ENABLED",
        "WORKFLOW_RATE_LIMIT_POINTS",
        "WORKFLOW_RATE_LIMIT_WINDOW_SECONDS",
        "WORKFLOW_PARALLEL_EXECUTION_ENABLED",
        "WORKFLOW_MAX_PARALLEL_STEPS",
        "KAFKA_BOOTSTRAP_SERVERS",
        "DATABASE_URL",
        "REDIS_URL",
    }
    assert documented <= VARIABLE_NAMES


def test_values_are_parsed_into_their_types() -> None:
    settings = Settings.from_env(
        {
            "WORKFLOW_CACHE_ENABLED": "false",
            "WORKFLOW_MAX_PARALLEL_STEPS": " 4 ",
            "WORKFLOW_PARALLEL_EXECUTION_ENABLED": "0",
            "KAFKA_BOOTSTRAP_SERVERS": "broker-a:9092,broker-b:9092",
        }
    )
    assert settings.cache_enabled is False
    assert settings.max_parallel_steps == 4
    assert settings.parallel_execution_enabled is False
    assert settings.kafka_bootstrap_servers == "broker-a:9092,broker-b:9092"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKFLOW_CACHE_ENABLED", "maybe"),
        ("WORKFLOW_CACHE_TTL_MS", "an hour"),
        ("WORKFLOW_RATE_LIMIT_POINTS", "0"),
        ("WORKFLOW_MAX_PARALLEL_STEPS", "-3"),
        ("DATABASE_URL", "mysql://db"),
        ("REDIS_URL", ""),
        ("STEPSTREAM_TOPIC_PREFIX", "has space"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_round_trips_through_the_environment() -> None:
    settings = Settings.from_env({"WORKFLOW_RATE_LIMIT_POINTS": "25", "REDIS_URL": "redis://r:1/2"})
    assert Settings.from_env(settings.as_environment()) == settings


def test_not_a_number_and_infinity_are_not_positive_numbers() -> None:
    for raw in ("nan", "NaN", "inf", "-inf"):
        with pytest.raises(SettingsError, match="AI_TIMEOUT_SECONDS"):
            Settings.from_env({"AI_TIMEOUT_SECONDS": raw})
