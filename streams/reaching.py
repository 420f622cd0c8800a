"""Reaching a Kafka cluster that may be partly down, and saying why when it cannot be.

A client's first request after bootstrapping goes to one broker it knows, picked at
random; in the seconds before a dead broker is fenced that may be the dead one, and a
start or a worker failed while two brokers of three answered. Here every broker is tried,
and the bootstrap servers again, until the deadline; only when none gives the cluster's
metadata does the error come, naming which servers answered and why the others did not
(refused, an untrusted certificate, a wrong password)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    SaslAuthenticationFailed,
)
from aiokafka.protocol.metadata import MetadataRequest

from stepstream.streams.kafka_access import KafkaAccess

RETRY_SECONDS = 0.5
ANSWERED = "answered"  # what a server that gave the metadata said
T = TypeVar("T")


class KafkaUnavailable(ConnectionError):
    """No broker of the cluster gave its metadata; the message says what each did."""

    def __init__(self, kafka: KafkaAccess, answers: dict[str, str]) -> None:
        said = "; ".join(f"{server}: {answer}" for server, answer in answers.items())
        super().__init__(f"cannot use Kafka at {kafka.bootstrap_servers}: {said}")
        self.answers = answers

    @property
    def cause_is_access(self) -> bool:
        """Credentials or certificates, which waiting does not mend."""
        return any(a.startswith(("authentication", "TLS")) for a in self.answers.values())


async def cluster_topics(kafka: KafkaAccess, timeout: float = 30.0) -> set[str]:
    """The cluster's topic names, from any broker that answers within `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        client = AIOKafkaClient(**kafka.client_options(), request_timeout_ms=10_000)
        try:
            await client.bootstrap()
            metadata = await client.fetch_all_metadata()
            return set(metadata.topics())
        except (TimeoutError, KafkaError, OSError):
            answers = await ask_each_server(kafka)
            # None answered, or what failed was the credentials: waiting will not help.
            failure = KafkaUnavailable(kafka, answers)
            if failure.cause_is_access or ANSWERED not in answers.values():
                raise failure from None
            if loop.time() + RETRY_SECONDS > deadline:
                raise failure from None
            await asyncio.sleep(RETRY_SECONDS)
        finally:
            await client.close()


async def with_admin(
    kafka: KafkaAccess, action: Callable[[AIOKafkaAdminClient], Awaitable[T]], timeout: float = 30.0
) -> T:
    """Run `action` with an admin client; when the broker it asked is down (a dead node
    still in the metadata, a leader moving), run it again, with a new client, until the
    deadline. `action` must be safe to run again (create what is missing, read)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=10_000)
        try:
            await admin.start()
            return await action(admin)
        except (TimeoutError, NodeNotReadyError, KafkaConnectionError, KafkaTimeoutError):
            if loop.time() + RETRY_SECONDS > deadline:
                raise KafkaUnavailable(kafka, await ask_each_server(kafka)) from None
            await asyncio.sleep(RETRY_SECONDS)
        finally:
            await admin.close()


async def ask_each_server(kafka: KafkaAccess) -> dict[str, str]:
    """What each bootstrap server says to a metadata request: 'answered', or the cause."""
    options = kafka.security_options()
    answers = {}
    for host, port, _ in collect_hosts(kafka.bootstrap_servers):
        answers[f"{host}:{port}"] = await _ask(host, port, options)
    return answers


async def _ask(host: str, port: int, options: dict[str, Any]) -> str:
    try:
        conn = await create_conn(host, port, request_timeout_ms=5_000, **options)
    except SaslAuthenticationFailed as error:
        return f"authentication failed ({_first_line(error)})"
    except ssl.SSLError as error:
        return _tls_reason(error)
    except (TimeoutError, KafkaConnectionError, OSError) as error:
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ssl.SSLError):
            return _tls_reason(cause)
        return f"no answer ({type(error).__name__}: {_first_line(error)})"
    except KafkaError as error:
        return f"refused ({type(error).__name__}: {_first_line(error)})"
    try:
        await conn.send(MetadataRequest(None))
    except (TimeoutError, KafkaError) as error:
        return f"connected, but no metadata ({type(error).__name__})"
    finally:
        conn.close()
    return ANSWERED


def _tls_reason(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({error.verify_message})"
    return f"TLS handshake failed ({error.reason or _first_line(error)})"


def _first_line(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0][:200]
