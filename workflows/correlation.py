"""The correlator's core: events from outside meet the waits for them. Pure: no I/O.

One `Correlation` per address: (tenant, event name, scope, key), where scope `key` is a
business key a `waitFor` step names in its `correlationKey`, and scope `execution` is
an execution's id (a signal). The tenant is part of the address, so a tenant's event
never meets another tenant's wait, whatever key it carries.

One event goes to one wait. Waits are served oldest first; an event that finds none is
held for its time to live and goes to the first wait that begins within it (an early
event is never lost); one still held when its time is up is unmatched, and said so.
One-to-one, because an event is a fact for one execution (the technician accepted this
request): with delivery to every wait, a held event would also reach executions that
begin waiting long after it, and "applied once" could not be checked. A producer that
means several executions sends one event to each key, or a signal to each execution.

Delivery is at-least-once, so everything here is idempotent: an event id seen again
(the producer's retry, a redelivery) delivers again to the wait it went to, with the
same ids, and nothing else; a wait that begins twice is one wait. An event the
execution refuses (its wait ended meanwhile) comes back and is offered again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

SCOPES = ("key", "execution")


@dataclass(frozen=True, slots=True)
class Address:
    tenant_id: str
    name: str
    scope: str  # "key" or "execution"
    key: str

    def stored(self) -> bytes:
        """The table key: JSON, so no part can be mistaken for another, and it sorts."""
        return orjson.dumps([self.tenant_id, self.name, self.scope, self.key])

    @classmethod
    def from_stored(cls, stored: bytes) -> Address:
        tenant_id, name, scope, key = orjson.loads(stored)
        return cls(tenant_id, name, scope, key)


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """An event as the producer sent it, with when its time to live ends."""

    event_id: str
    payload_json: str
    sent_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Waiter:
    """A wait for the address's event: attempt `attempt` of a step of an execution;
    `origin` is the execution's identity, for the records sent to it."""

    execution_id: str
    step_id: str
    attempt: int
    origin: dict[str, Any]

    @property
    def subscription(self) -> str:
        return f"{self.execution_id}/{self.step_id}/{self.attempt}"


@dataclass(frozen=True, slots=True)
class Delivery:
    waiter: Waiter
    event: HeldEvent


@dataclass(frozen=True, slots=True)
class Offered:
    """What an offered event came to: matched, held, duplicate (an id seen before) or
    unmatched (its time to live was up already), and the records that follow."""

    outcome: str
    deliveries: list[Delivery] = field(default_factory=list)
    unmatched: list[HeldEvent] = field(default_factory=list)


@dataclass
class Correlation:
    """What an address holds: the waits for its event, oldest first, the events that
    found none (held), and the events that went to a wait (matched), kept for their
    time to live so that one seen again goes to the same wait."""

    waiting: list[Waiter] = field(default_factory=list)
    held: list[HeldEvent] = field(default_factory=list)
    matched: list[Delivery] = field(default_factory=list)

    # What the address's events came to --------------------------------------------

    def offer(self, event: HeldEvent, now_ms: int) -> Offered:
        """An event arrived (or came back refused): what it came to."""
        for delivery in self.matched:
            if delivery.event.event_id == event.event_id:
                return Offered("duplicate", [delivery])  # seen: deliver it again
        if any(held.event_id == event.event_id for held in self.held):
            return Offered("duplicate")
        if self.waiting:
            delivery = Delivery(self.waiting.pop(0), event)
            self.matched.append(delivery)
            return Offered("matched", [delivery])
        if event.expires_at_ms <= now_ms:
            return Offered("unmatched", unmatched=[event])
        self.held.append(event)
        self.held.sort(key=lambda held: held.sent_at_ms)  # one offered again keeps its place
        return Offered("held")

    def begin(self, waiter: Waiter) -> list[Delivery]:
        """A wait began: the oldest held event goes to it, or it waits."""
        subscription = waiter.subscription
        for delivery in self.matched:
            if delivery.waiter.subscription == subscription:
                return [delivery]  # began again: deliver again what it was given
        if any(w.subscription == subscription for w in self.waiting):
            return []
        if self.held:
            delivery = Delivery(waiter, self.held.pop(0))
            self.matched.append(delivery)
            return [delivery]
        self.waiting.append(waiter)
        return []

    def end(self, subscription: str) -> None:
        """A wait ended otherwise than by this address's event."""
        self.waiting = [w for w in self.waiting if w.subscription != subscription]

    def refuse(self, subscription: str, event_id: str, now_ms: int) -> Offered:
        """The execution refused a delivered event (its wait had ended): the wait is
        forgotten (its end may have been lost) and the event offered again."""
        self.end(subscription)
        for delivery in self.matched:
            if delivery.event.event_id == event_id and delivery.waiter.subscription == subscription:
                self.matched.remove(delivery)
                return self.offer(delivery.event, now_ms)
        return Offered("duplicate")  # refused before: already offered again

    def expire(self, now_ms: int) -> list[HeldEvent]:
        """Events whose time to live is up: held ones are unmatched; matched ones are
        forgotten (an id seen after that is a new event)."""
        unmatched = [event for event in self.held if event.expires_at_ms <= now_ms]
        self.held = [event for event in self.held if event.expires_at_ms > now_ms]
        self.matched = [d for d in self.matched if d.event.expires_at_ms > now_ms]
        return unmatched

    def next_due_ms(self) -> int | None:
        """When something held here expires (the expiry index's time); None: never."""
        times = [e.expires_at_ms for e in self.held] + [d.event.expires_at_ms for d in self.matched]
        return min(times, default=None)

    @property
    def empty(self) -> bool:
        return not (self.waiting or self.held or self.matched)

    # Stored as JSON ------------------------------------------------------------------

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "waiting": [_waiter_dict(w) for w in self.waiting],
                "held": [_event_dict(e) for e in self.held],
                "matched": [
                    {"waiter": _waiter_dict(d.waiter), "event": _event_dict(d.event)}
                    for d in self.matched
                ],
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_json(cls, stored: bytes | None) -> Correlation:
        return cls() if stored is None else cls.from_dict(orjson.loads(stored))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Correlation:
        return cls(
            waiting=[Waiter(**w) for w in data["waiting"]],
            held=[HeldEvent(**e) for e in data["held"]],
            matched=[
                Delivery(Waiter(**d["waiter"]), HeldEvent(**d["event"])) for d in data["matched"]
            ],
        )


def _waiter_dict(waiter: Waiter) -> dict[str, Any]:
    return {
        "execution_id": waiter.execution_id,
        "step_id": waiter.step_id,
        "attempt": waiter.attempt,
        "origin": waiter.origin,
    }


def _event_dict(event: HeldEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "payload_json": event.payload_json,
        "sent_at_ms": event.sent_at_ms,
        "expires_at_ms": event.expires_at_ms,
    }


def expires_at(sent_at_ms: int, ttl_ms: int | None, default_ms: int, most_ms: int) -> int:
    """When an event's time to live ends: the producer's, or the default, never past the
    most the engine keeps an event."""
    ttl = default_ms if ttl_ms is None else max(0, ttl_ms)
    return sent_at_ms + min(ttl, most_ms)


EXPIRY_PREFIX = "#expire/"


def expiry_key(due_ms: int, address: Address) -> bytes:
    """The expiry index: `#expire/<due ms, 13 digits>/<address>`, sorted by due time, so
    a sweep reads what is due and no further."""
    return f"{EXPIRY_PREFIX}{due_ms:013d}/".encode() + address.stored()


def split_expiry_key(key: bytes) -> tuple[int, Address] | None:
    prefix = EXPIRY_PREFIX.encode()
    if not key.startswith(prefix):
        return None
    due, _, stored = key[len(prefix) :].partition(b"/")
    if not due.isdigit():
        return None
    try:
        return int(due), Address.from_stored(stored)
    except (ValueError, TypeError):
        return None


def expiries_until(now_ms: int) -> bytes:
    """The first key past every expiry key due at `now_ms`."""
    return f"{EXPIRY_PREFIX}{now_ms + 1:013d}/".encode()
