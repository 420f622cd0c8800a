"""The correlator: routes events from outside to the executions that wait for them.

An event carries a business key, not an execution id, so it lands on another partition
than the waiting execution. Both the event and the wait's subscription are keyed by the
same correlation key on `<prefix>.events`, so they meet in one partition, where the
correlator keeps them in its `correlations` table by address (tenant, name, scope, key;
`stepstream.workflows.correlation` decides). A delivery goes to the execution's own
partition as an EventDelivered, which the coordinator applies; one it refuses comes
back as an EventRefused.

Delivery rules: writes go to the store and the changelog before what they cause is
sent, and faust commits after its producer flush (commit last); an input seen again
delivers again what it delivered, with the same ids (redelivery re-emits); stale
generations are fenced by `Engine.consume_batches`.

Held events expire through an index of due times in the same table (`#expire/...`),
swept every EXPIRY_SWEEP_SECONDS: the sweep sends an EventExpiryDue on the address's
partition, and the expiry is applied in-stream like any other input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from stepstream.agents.checkpoints import ORIGIN_FIELDS
from stepstream.agents.coordinator_events import misrouted
from stepstream.infra.metrics import METRICS
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.changelog import Changelog
from stepstream.streams.engine import Engine
from stepstream.streams.events import envelope, event_id, now_ms
from stepstream.streams.partitioner import partition_index
from stepstream.streams.store_scan import keys_in_range
from stepstream.workflows.correlation import (
    EXPIRY_PREFIX,
    SCOPES,
    Address,
    Correlation,
    Delivery,
    HeldEvent,
    Waiter,
    expires_at,
    expiries_until,
    expiry_key,
    split_expiry_key,
)

log = logging.getLogger(__name__)

EXPIRY_SWEEP_SECONDS = 1.0
RESEND_AFTER_SECONDS = 30.0  # an expiry still in the index by then is sent again
MOST_PER_SWEEP = 5_000
COUNT_EVERY_SWEEPS = 10  # the held gauge is a full read of the index: not every sweep
INPUTS = ("EventSent", "EventWaitChanged", "EventRefused", "EventExpiryDue")

Outgoing = tuple[str, str, str, dict[str, Any]]


def address_of(record: dict[str, Any]) -> Address:
    scope = record["scope"]
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not record["correlation_key"]:
        raise ValueError("correlation_key is empty")
    return Address(record["tenant_id"], record["name"], scope, record["correlation_key"])


class Correlator:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.names = engine.names
        self.table = engine.stream_tables().correlations
        self.changelog = Changelog(engine.app, self.table)
        settings = engine.settings
        self.ttl_ms = settings.event_ttl_seconds * 1000
        self.most_ms = settings.event_ttl_max_seconds * 1000
        self.armed: dict[bytes, float] = {}  # expiry key -> when this worker sent it
        self.sweeps = 0

    async def handle_batch(self, stream: StreamT[Any], events: Sequence[EventT[Any]]) -> None:
        outgoing: list[Outgoing] = []
        letters: list[tuple[Any, Exception | str]] = []
        for event in events:
            message = event.message
            cast(faust.Stream[Any], stream)._set_current_event(event)  # noqa: SLF001
            try:
                decoded = CODEC.decode(message.value)
                if decoded.name not in INPUTS:
                    raise ValueError(f"the correlator does not take {decoded.name} events")
                address = address_of(decoded.record)
                if message.key != address.key.encode():
                    raise ValueError(
                        f"the Kafka key must be the correlation key {address.key!r}, so that "
                        "the event meets its waits in one partition"
                    )
                wrong_partition = misrouted(
                    message.key,
                    message.partition,
                    self.engine.settings.topic_partitions,
                    "publish events keyed by correlation_key with the default partitioner",
                )
                if wrong_partition:
                    raise ValueError(wrong_partition)
                outgoing += self.apply(address, decoded.name, decoded.record, message.partition)
            except (EventCodecError, ValueError, KeyError, TypeError) as error:
                letters.append((message, error))
        await self.changelog.send()  # the table's writes, before what they cause
        for letter, reason in letters:
            await self.engine.dead_letter(letter, reason)
        for outgoing_event in outgoing:
            await self.engine.send(*outgoing_event)

    def apply(
        self, address: Address, name: str, record: dict[str, Any], partition: int
    ) -> list[Outgoing]:
        """One input applied to its address's correlation, written back at once."""
        key = address.stored()
        correlation = Correlation.from_json(self.table.get(key))
        due_before = correlation.next_due_ms()
        now = now_ms()
        deliveries: list[Delivery] = []
        unmatched: list[HeldEvent] = []
        if name == "EventSent":
            held = HeldEvent(
                record["event_id"],
                record["payload_json"],
                record["timestamp"],
                expires_at(record["timestamp"], record["ttl_ms"], self.ttl_ms, self.most_ms),
            )
            offered = correlation.offer(held, now)
            deliveries, unmatched = offered.deliveries, offered.unmatched
            if offered.outcome != "unmatched":  # counted below, with the expired
                METRICS.events.labels(offered.outcome).inc()
        elif name == "EventWaitChanged":
            waiter = Waiter(
                record["execution_id"],
                record["step_id"],
                record["attempt"],
                {field: record[field] for field in ORIGIN_FIELDS},
            )
            if record["action"] == "begin":
                deliveries = correlation.begin(waiter)
            elif record["action"] == "end":
                correlation.end(waiter.subscription)
            else:
                raise ValueError(f"action must be begin or end, got {record['action']!r}")
        elif name == "EventRefused":
            subscription = f"{record['execution_id']}/{record['step_id']}/{record['attempt']}"
            log.info(
                "event %s for %s refused: %s; offered again",
                *(record["sent_event_id"], subscription, record["reason"]),
            )
            METRICS.events.labels("refused").inc()
            offered = correlation.refuse(subscription, record["sent_event_id"], now)
            deliveries, unmatched = offered.deliveries, offered.unmatched
        else:  # EventExpiryDue
            unmatched = correlation.expire(now)
        self.write(address, correlation, due_before, partition)
        if unmatched:
            METRICS.events.labels("unmatched").inc(len(unmatched))
        return [self.delivered(address, d, now) for d in deliveries] + [
            self.unmatched(address, event, now) for event in unmatched
        ]

    def write(
        self, address: Address, correlation: Correlation, due_before: int | None, partition: int
    ) -> None:
        """The correlation and its expiry index entry; an empty one leaves the table."""
        key = address.stored()
        due_after = correlation.next_due_ms()
        if due_before != due_after:
            if due_before is not None:
                self.changelog.delete(expiry_key(due_before, address), partition)
            if due_after is not None:
                self.changelog.put(expiry_key(due_after, address), b"", partition)
        if correlation.empty:
            self.changelog.delete(key, partition)
        else:
            self.changelog.put(key, correlation.to_json(), partition)

    def delivered(self, address: Address, delivery: Delivery, now: int) -> Outgoing:
        waiter, event = delivery.waiter, delivery.event
        METRICS.event_latency.observe(max(0, now - event.sent_at_ms) / 1000)
        record = envelope(
            "event-delivered",
            waiter.origin,
            waiter.step_id,
            waiter.attempt,
            event.event_id,
            step_id=waiter.step_id,
            attempt=waiter.attempt,
            name=address.name,
            correlation_key=address.key,
            scope=address.scope,
            sent_event_id=event.event_id,
            payload_json=event.payload_json,
            sent_at=event.sent_at_ms,
        )
        return self.names.executions, waiter.execution_id, "EventDelivered", record

    def unmatched(self, address: Address, event: HeldEvent, now: int) -> Outgoing:
        log.warning(
            "event %s %r (%s %s, tenant %s) matched no wait within its time to live",
            *(event.event_id, address.name, address.scope, address.key, address.tenant_id),
        )
        record = {
            "event_id": event_id("unmatched", address.stored().decode(), event.event_id),
            "tenant_id": address.tenant_id,
            "timestamp": now,
            "name": address.name,
            "correlation_key": address.key,
            "scope": address.scope,
            "sent_event_id": event.event_id,
            "payload_json": event.payload_json,
            "sent_at": event.sent_at_ms,
            "expires_at": event.expires_at_ms,
            "sender": None,
        }
        return self.names.events_unmatched, address.key, "EventUnmatched", record

    # The expiry sweep ------------------------------------------------------------------

    def partition_of(self, index_key: bytes) -> int:
        parsed = split_expiry_key(index_key)
        key = parsed[1].key.encode() if parsed else index_key
        return partition_index(key, self.engine.settings.topic_partitions)

    def owned_partitions(self) -> list[int]:
        topic = self.names.events
        return sorted(tp.partition for tp in self.engine.assigned if tp.topic == topic)

    async def sweep(self) -> None:
        """Send an EventExpiryDue for each address with something due, once per
        RESEND_AFTER_SECONDS at most (the first may still be on its way)."""
        if not self.engine.ready:
            return
        clock = time.monotonic()
        self.armed = {k: t for k, t in self.armed.items() if clock - t < RESEND_AFTER_SECONDS}
        now = now_ms()
        start, stop = EXPIRY_PREFIX.encode(), expiries_until(now)
        partitions = self.owned_partitions()
        for partition in partitions:
            entries = keys_in_range(
                self.table, partition, start, stop, MOST_PER_SWEEP, self.partition_of
            )
            for index_key, _ in entries:
                parsed = split_expiry_key(index_key)
                if parsed is None or index_key in self.armed:
                    continue
                due, address = parsed
                self.armed[index_key] = clock
                record = {
                    "event_id": event_id("expiry-due", due, address.stored().decode()),
                    "tenant_id": address.tenant_id,
                    "timestamp": now,
                    "name": address.name,
                    "correlation_key": address.key,
                    "scope": address.scope,
                }
                await self.engine.send(self.names.events, address.key, "EventExpiryDue", record)
        self.sweeps += 1
        if self.sweeps % COUNT_EVERY_SWEEPS == 1:
            METRICS.events_held.set(self.held(partitions))

    def held(self, partitions: list[int]) -> int:
        """Events held for waits, read from the table (a gauge, now and then)."""
        total = 0
        for partition in partitions:
            for _, value in keys_in_range(
                self.table, partition, b"[", b"\\", 2**31, self.address_partition
            ):
                total += len(Correlation.from_json(value).held)
        return total

    def address_partition(self, key: bytes) -> int:
        return partition_index(
            Address.from_stored(key).key.encode(), self.engine.settings.topic_partitions
        )


def install(engine: Engine) -> Correlator:
    correlator = Correlator(engine)
    channel = engine.app.topic(engine.names.events, key_serializer="raw", value_serializer="raw")

    @engine.app.agent(channel, name="correlator")
    async def run(stream: StreamT[Any]) -> None:
        await engine.consume_batches(stream, correlator.handle_batch)

    @engine.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_partitions(sender: Any, *args: Any, **kwargs: Any) -> None:
        correlator.armed.clear()

    @engine.app.timer(interval=EXPIRY_SWEEP_SECONDS)  # type: ignore[untyped-decorator]
    async def sweep_expiries() -> None:
        await correlator.sweep()

    return correlator
