"""How every Kafka client the engine makes reaches the cluster: the bootstrap servers,
TLS and SASL, in one place. faust's consumer and producer, the aiokafka clients of the
executor, persister, guard and catalog, the admin clients, the client library, the CLI
and the console all take their options from here, so a secured cluster needs the
settings once (README "Running on your Kafka").

The password never leaves this object's options: it is not in its repr, and errors
about Kafka name the server and the cause, not the credentials."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepstream.streams import aiokafka_fixes
from stepstream.streams.settings import Settings

# How old a client's view of the cluster may get before it asks again. aiokafka's 300 s
# default leaves a client that failed over to other brokers unaware of a returned one for
# five minutes; a minute costs one metadata request a minute per client.
METADATA_MAX_AGE_MS = 60_000


@dataclass(frozen=True)
class KafkaAccess:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_ca_file: str = ""
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    ssl_check_hostname: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaAccess:
        password = settings.kafka_sasl_password
        if settings.kafka_sasl_password_file:
            password = Path(settings.kafka_sasl_password_file).read_text().strip()
        return cls(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=password,
            ssl_ca_file=settings.kafka_ssl_ca_file,
            ssl_cert_file=settings.kafka_ssl_cert_file,
            ssl_key_file=settings.kafka_ssl_key_file,
            ssl_check_hostname=settings.kafka_ssl_check_hostname,
        )

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        return _ssl_context(self) if self.uses_tls else None

    def security_options(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for TLS and SASL."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka producer, consumer or admin client."""
        aiokafka_fixes.apply()
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "metadata_max_age_ms": METADATA_MAX_AGE_MS,
            **self.security_options(),
        }

    def faust_options(self) -> dict[str, Any]:
        """faust.App settings: the broker, its credentials, the metadata age."""
        import faust  # the client library and the CLI never need faust

        aiokafka_fixes.apply()
        options: dict[str, Any] = {
            "broker": ",".join(f"kafka://{h}" for h in self.bootstrap_servers.split(",")),
            "consumer_metadata_max_age_ms": METADATA_MAX_AGE_MS,
            "producer_metadata_max_age_ms": METADATA_MAX_AGE_MS,
        }
        if self.uses_sasl:
            options["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        elif self.uses_tls:
            options["broker_credentials"] = faust.SSLCredentials(self.ssl_context())
        return options


@functools.cache
def kafka_access(settings: Settings) -> KafkaAccess:
    """The access of these settings (read once: the password may come from a file)."""
    return KafkaAccess.from_settings(settings)


@functools.cache
def _ssl_context(access: KafkaAccess) -> ssl.SSLContext:
    """One context per setting (loading a CA bundle costs milliseconds, and every client
    of a process shares it)."""
    context = ssl.create_default_context(cafile=access.ssl_ca_file or None)
    context.check_hostname = access.ssl_check_hostname
    if access.ssl_cert_file:
        context.load_cert_chain(access.ssl_cert_file, access.ssl_key_file)
    return context
