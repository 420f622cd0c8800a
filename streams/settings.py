"""One typed settings object, read from the environment variables the product documents.

A bad value stops start-up with a message that names the variable, so a typo in a
deployment fails loudly instead of running with a silent default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from stepstream.workflows.fan_out import DEFAULT_MAX_ITEMS, MAX_ITEMS_LIMIT


class SettingsError(ValueError):
    """A configuration variable holds a value stepstream cannot use."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def _parse_positive_int(raw: str) -> int:
    value = int(raw.strip())
    if value <= 0:
        raise ValueError("expected a positive integer")
    return value


def _parse_foreach_cap(raw: str) -> int:
    value = _parse_positive_int(raw)
    if value > MAX_ITEMS_LIMIT:
        raise ValueError(f"at most {MAX_ITEMS_LIMIT}")
    return value


def _parse_non_negative_int(raw: str) -> int:
    value = int(raw.strip())
    if value < 0:
        raise ValueError("expected 0 or a positive integer")
    return value


def _parse_non_empty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a non-empty value")
    return raw.strip()


def _parse_url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = _parse_non_empty(raw)
        if not value.startswith(tuple(f"{scheme}://" for scheme in schemes)):
            raise ValueError(
                f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        return value

    return parse


def _parse_optional_url(*schemes: str) -> Callable[[str], str]:
    required = _parse_url(*schemes)
    return lambda raw: required(raw) if raw.strip() else ""


def _parse_positive_float(raw: str) -> float:
    value = float(raw.strip())
    if not math.isfinite(value) or value <= 0:  # float() reads "nan" and "inf" too
        raise ValueError("expected a positive number")
    return value


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def _parse_upper_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(c for c in choices if c)}")
        return value

    return parse


def _parse_readable_file(raw: str) -> str:
    path = raw.strip()
    if path and not os.access(path, os.R_OK):
        raise ValueError("no readable file there")
    return path


def _parse_port(raw: str) -> int:
    value = int(raw.strip())
    if not 0 <= value <= 65_535:
        raise ValueError("expected a port number, 0 to 65535 (0: any free port)")
    return value


def _parse_topic_prefix(raw: str) -> str:
    value = raw.strip()
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not value or not set(value) <= allowed:
        raise ValueError("expected letters, digits, '.', '_' or '-'")
    return value


@dataclass(frozen=True)
class Settings:
    """Every knob of a stepstream process. Field metadata names the variable and parser."""

    cache_enabled: bool = True
    cache_ttl_ms: int = 3_600_000
    ai_response_cache_ttl_ms: int = 300_000
    rate_limit_enabled: bool = True
    rate_limit_points: int = 10
    rate_limit_window_seconds: int = 60
    rate_limit_tenant_points: int = 100
    rate_limit_policy: str = "reject"
    parallel_execution_enabled: bool = True
    max_parallel_steps: int = 10
    max_foreach_items: int = DEFAULT_MAX_ITEMS  # items a `forEach` may fan out over
    max_nesting_depth: int = 5  # how deep sub-workflows may nest
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # How every Kafka client the engine makes authenticates (streams.kafka_access).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_sasl_password_file: str = ""  # a file holding the password (a mounted secret)
    kafka_ssl_ca_file: str = ""  # empty: the system's trusted authorities
    kafka_ssl_cert_file: str = ""  # with the key: mutual TLS
    kafka_ssl_key_file: str = ""
    kafka_ssl_check_hostname: bool = True
    database_url: str = "postgresql://stepstream:stepstream@127.0.0.1:15432/stepstream"
    redis_url: str = "redis://127.0.0.1:16379/0"
    ai_base_url: str = ""  # empty: the local rules classifier answers
    ai_api_key: str = field(default="", repr=False)
    ai_model: str = "gpt-4o-mini"
    ai_timeout_seconds: float = 10.0
    topic_prefix: str = "stepstream"
    topic_partitions: int = 8
    replication_factor: int = 1  # of the topics the worker creates (3 on a real cluster)
    # Replicas that must hold an event before the broker acknowledges it (acks=all). 0:
    # replication factor - 1 when the factor is 3 or more, else the cluster's default.
    min_insync_replicas: int = 0
    max_input_bytes: int = 262_144  # a start's input JSON; larger starts are rejected
    watchdog_margin_ms: int = 30_000  # silence past a step's timeout before a resume
    # How long an ended execution's checkpoint stays in the engine's tables (and its id
    # deduplicates starts): a day covers producers retrying a start, late reports and an
    # operator's retry of yesterday's failures; then PostgreSQL alone keeps the history.
    retention_seconds: int = 86_400
    # How long an event from outside that no wait took yet is held for one that begins
    # (the producer may ask for less or more), and the most any event is held.
    event_ttl_seconds: int = 3_600
    event_ttl_max_seconds: int = 7 * 86_400
    # How often the coordinator commits what it consumed. Longer: less commit work, more
    # events processed again after a crash (they are idempotent; nothing is lost).
    commit_interval_ms: int = 1_000
    # How long the worker's producer waits to fill a batch. Longer: fewer, larger
    # requests, less CPU per step and more steps/s at load; each hop waits up to this
    # long when the engine is idle (bench/pipeline.py, README "Benchmarks").
    producer_linger_ms: int = 10
    # The linger while the worker is short of CPU (streams.linger): larger batches when
    # throughput is what is scarce. At or below producer_linger_ms: the linger is fixed.
    producer_linger_busy_ms: int = 40
    # The longest the coordinator keeps adding to a batch while events keep coming; a
    # batch is handed over at once when nothing more is waiting (streams.batches).
    batch_window_ms: int = 10
    # The progress guard (streams.guard): a partition assigned here, with records past its
    # committed offset and nothing in flight, whose commit has not moved for this long is
    # reported and healed. Well above the commit interval and the batch window.
    stall_seconds: float = 20.0
    # A worker's /metrics and /healthz, on 127.0.0.1; 0: a free port, announced (see
    # `stepstream workers`). Give each worker its own fixed port for Prometheus to scrape.
    metrics_port: int = 0
    # How often a worker writes its cache and rate-limit counters to PostgreSQL, for the
    # analytics' charts over time (agents.metric_sampler).
    metrics_sample_seconds: float = 60.0
    log_format: str = "text"  # or "json": one JSON object per line
    # The console's sessions end after this long without a request (and after 12 hours
    # in any case). Its cookies are Secure (HTTPS only; browsers allow localhost) unless
    # turned off for a console reached over plain HTTP on another host.
    console_session_idle_seconds: int = 1800
    console_secure_cookies: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable; raise SettingsError naming the first bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            variable, parse = ENVIRONMENT[item.name]
            raw = env.get(variable)
            if raw is None:
                continue
            try:
                values[item.name] = parse(raw)
            except ValueError as error:
                shown = "***" if variable in SECRET_VARIABLES else repr(raw)
                raise SettingsError(f"{variable}={shown} is invalid: {error}") from None
        settings = cls(**values)
        check_kafka_security(settings)
        return settings

    def as_environment(self) -> dict[str, str]:
        """The settings as the environment variables that would produce them."""
        result = {}
        for item in fields(self):
            value = getattr(self, item.name)
            text = str(value).lower() if isinstance(value, bool) else str(value)
            result[ENVIRONMENT[item.name][0]] = text
        return result


ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "cache_enabled": ("WORKFLOW_CACHE_ENABLED", _parse_bool),
    "cache_ttl_ms": ("WORKFLOW_CACHE_TTL_MS", _parse_positive_int),
    "ai_response_cache_ttl_ms": ("AI_RESPONSE_CACHE_TTL_MS", _parse_positive_int),
    "rate_limit_enabled": ("WORKFLOW_RATE_LIMIT_ENABLED", _parse_bool),
    "rate_limit_points": ("WORKFLOW_RATE_LIMIT_POINTS", _parse_positive_int),
    "rate_limit_window_seconds": ("WORKFLOW_RATE_LIMIT_WINDOW_SECONDS", _parse_positive_int),
    "rate_limit_tenant_points": ("WORKFLOW_RATE_LIMIT_TENANT_POINTS", _parse_positive_int),
    "rate_limit_policy": ("WORKFLOW_RATE_LIMIT_POLICY", _parse_choice("reject", "defer")),
    "parallel_execution_enabled": ("WORKFLOW_PARALLEL_EXECUTION_ENABLED", _parse_bool),
    "max_parallel_steps": ("WORKFLOW_MAX_PARALLEL_STEPS", _parse_positive_int),
    "max_foreach_items": ("WORKFLOW_MAX_FOREACH_ITEMS", _parse_foreach_cap),
    "max_nesting_depth": ("WORKFLOW_MAX_NESTING_DEPTH", _parse_positive_int),
    "kafka_bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", _parse_non_empty),
    "kafka_security_protocol": (
        "KAFKA_SECURITY_PROTOCOL",
        _parse_upper_choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    ),
    "kafka_sasl_mechanism": (
        "KAFKA_SASL_MECHANISM",
        _parse_upper_choice("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    ),
    "kafka_sasl_username": ("KAFKA_SASL_USERNAME", str.strip),
    "kafka_sasl_password": ("KAFKA_SASL_PASSWORD", str),
    "kafka_sasl_password_file": ("KAFKA_SASL_PASSWORD_FILE", _parse_readable_file),
    "kafka_ssl_ca_file": ("KAFKA_SSL_CA_FILE", _parse_readable_file),
    "kafka_ssl_cert_file": ("KAFKA_SSL_CERT_FILE", _parse_readable_file),
    "kafka_ssl_key_file": ("KAFKA_SSL_KEY_FILE", _parse_readable_file),
    "kafka_ssl_check_hostname": ("KAFKA_SSL_CHECK_HOSTNAME", _parse_bool),
    "database_url": ("DATABASE_URL", _parse_url("postgresql", "postgres")),
    "redis_url": ("REDIS_URL", _parse_url("redis", "rediss", "unix")),
    "ai_base_url": ("AI_BASE_URL", _parse_optional_url("http", "https")),
    "ai_api_key": ("AI_API_KEY", str.strip),
    "ai_model": ("AI_MODEL", _parse_non_empty),
    "ai_timeout_seconds": ("AI_TIMEOUT_SECONDS", _parse_positive_float),
    "topic_prefix": ("STEPSTREAM_TOPIC_PREFIX", _parse_topic_prefix),
    "topic_partitions": ("STEPSTREAM_TOPIC_PARTITIONS", _parse_positive_int),
    "replication_factor": ("STEPSTREAM_REPLICATION_FACTOR", _parse_positive_int),
    "min_insync_replicas": ("STEPSTREAM_MIN_INSYNC_REPLICAS", _parse_non_negative_int),
    "max_input_bytes": ("WORKFLOW_MAX_INPUT_BYTES", _parse_positive_int),
    "watchdog_margin_ms": ("WORKFLOW_WATCHDOG_MARGIN_MS", _parse_positive_int),
    "retention_seconds": ("WORKFLOW_RETENTION_SECONDS", _parse_positive_int),
    "event_ttl_seconds": ("STEPSTREAM_EVENT_TTL_SECONDS", _parse_non_negative_int),
    "event_ttl_max_seconds": ("STEPSTREAM_EVENT_TTL_MAX_SECONDS", _parse_positive_int),
    "commit_interval_ms": ("STEPSTREAM_COMMIT_INTERVAL_MS", _parse_positive_int),
    "producer_linger_ms": ("STEPSTREAM_PRODUCER_LINGER_MS", _parse_non_negative_int),
    "producer_linger_busy_ms": ("STEPSTREAM_PRODUCER_LINGER_BUSY_MS", _parse_non_negative_int),
    "batch_window_ms": ("STEPSTREAM_BATCH_WINDOW_MS", _parse_positive_int),
    "stall_seconds": ("STEPSTREAM_STALL_SECONDS", _parse_positive_float),
    "metrics_port": ("STEPSTREAM_METRICS_PORT", _parse_port),
    "metrics_sample_seconds": ("STEPSTREAM_METRICS_SAMPLE_SECONDS", _parse_positive_float),
    "log_format": ("STEPSTREAM_LOG_FORMAT", _parse_choice("text", "json")),
    "console_session_idle_seconds": (
        "STEPSTREAM_CONSOLE_SESSION_IDLE_SECONDS",
        _parse_positive_int,
    ),
    "console_secure_cookies": ("STEPSTREAM_CONSOLE_SECURE_COOKIES", _parse_bool),
}

SECRET_VARIABLES = frozenset({"KAFKA_SASL_PASSWORD", "AI_API_KEY"})

_SASL = {"SASL_PLAINTEXT", "SASL_SSL"}
_TLS = {"SSL", "SASL_SSL"}


def check_kafka_security(settings: Settings) -> None:
    """Settings that cannot work together stop start-up, naming the variable to change."""
    protocol = settings.kafka_security_protocol
    said = f"with KAFKA_SECURITY_PROTOCOL={protocol}"
    if protocol in _SASL:
        if not settings.kafka_sasl_mechanism:
            raise SettingsError(f"KAFKA_SASL_MECHANISM is required {said}")
        if not settings.kafka_sasl_username:
            raise SettingsError(f"KAFKA_SASL_USERNAME is required {said}")
        if not (settings.kafka_sasl_password or settings.kafka_sasl_password_file):
            raise SettingsError(
                f"KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE is required {said}"
            )
        if settings.kafka_sasl_password and settings.kafka_sasl_password_file:
            raise SettingsError("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
    else:
        for variable, value in (
            ("KAFKA_SASL_MECHANISM", settings.kafka_sasl_mechanism),
            ("KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
            ("KAFKA_SASL_PASSWORD", settings.kafka_sasl_password),
            ("KAFKA_SASL_PASSWORD_FILE", settings.kafka_sasl_password_file),
        ):
            if value:
                raise SettingsError(f"{variable} is set, but {said} no SASL is used")
    if protocol not in _TLS:
        for variable, value in (
            ("KAFKA_SSL_CA_FILE", settings.kafka_ssl_ca_file),
            ("KAFKA_SSL_CERT_FILE", settings.kafka_ssl_cert_file),
            ("KAFKA_SSL_KEY_FILE", settings.kafka_ssl_key_file),
        ):
            if value:
                raise SettingsError(f"{variable} is set, but {said} no TLS is used")
    if bool(settings.kafka_ssl_cert_file) != bool(settings.kafka_ssl_key_file):
        raise SettingsError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together (mutual TLS)")
    if 0 < settings.replication_factor < settings.min_insync_replicas:
        raise SettingsError(
            f"STEPSTREAM_MIN_INSYNC_REPLICAS={settings.min_insync_replicas} is more than "
            f"STEPSTREAM_REPLICATION_FACTOR={settings.replication_factor}: no write could succeed"
        )


VARIABLE_NAMES: frozenset[str] = frozenset(variable for variable, _ in ENVIRONMENT.values())
