"""The coordinator's checkpoints in the `executions` table.

A checkpoint is JSON: the execution's state (`stepstream.workflows.checkpoint`), its identity
(`origin`) and, per input topic, the offset of the last event applied to it (`applied`,
for delivery rule 2). It names its definition instead of carrying it; each definition
version is kept once per partition, under `definition_key`, beside the checkpoints that
name it.

A large execution's checkpoint is split (`stepstream.workflows.checkpoint.checkpoint_writes`): a
header under the execution id and parts under `part_key`, in the same partition.

Three indexes live beside the checkpoints: a key per running execution, from which
recovery re-arms what is in flight, a key per ended execution named by when its
checkpoint leaves (WORKFLOW_RETENTION_SECONDS after its end; both in
`stepstream.workflows.retention`), and a key per wait step's timer named by when it is
due (`stepstream.workflows.timers`).

Running executions' checkpoints are also kept in memory as last written, so an event
does not decode what the previous one encoded, and what changed since is found by
comparing step states. The table stays the truth: the memory is emptied whenever
partitions are revoked, and refilled from the table.

Reads and writes inside an event use faust's current event for the partition; the
coordinator sets it per execution. Writes go to the store at once and to the changelog
with the coordinator's batch (`streams.changelog`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

from faust.types import TableT

from stepstream.streams.changelog import Changelog
from stepstream.streams.events import from_json, to_json_bytes
from stepstream.streams.partitioner import partition_index
from stepstream.streams.settings import Settings
from stepstream.streams.store_scan import keys_in_range
from stepstream.workflows import (
    ExecutionState,
    ExecutionStatus,
    WorkflowDefinition,
    build_definition,
    definition_to_dict,
    new_execution,
    state_from_dict,
)
from stepstream.workflows.checkpoint import (
    DEFINITION_KEY_PREFIX,
    CheckpointError,
    DefinitionMemo,
    checkpoint_writes,
    definition_key,
    definition_ref,
    merge_parts,
    part_key,
    split_part_key,
    stored_parts,
)
from stepstream.workflows.retention import RUNNING_PREFIX, retire_due, retire_key, running_key
from stepstream.workflows.state import changed_steps
from stepstream.workflows.timers import armed_timers, split_timer_key

DEFINITION_KEY = DEFINITION_KEY_PREFIX.encode()
INTERNAL_KEY = b"#"  # definitions and indexes: execution ids start with a letter or digit
ORIGIN_FIELDS = ("execution_id", "workflow_id", "workflow_version", "tenant_id", "user_id")

# state, origin, offsets applied per input topic (None: not written yet, a new execution)
Loaded = tuple[ExecutionState, dict[str, Any], dict[str, int] | None]


def stored_part_key(key: bytes, part: int) -> bytes:
    """A part's table key; keys are a message's key bytes, whatever they hold."""
    return part_key(key.decode(errors="surrogateescape"), part).encode(errors="surrogateescape")


class UnknownExecution(LookupError):
    pass


class Checkpoints:
    def __init__(self, table: TableT[bytes, Any], changelog: Changelog, settings: Settings) -> None:
        self.table = table
        self.changelog = changelog
        self.settings = settings
        self.retention_ms = settings.retention_seconds * 1000
        self.memo: DefinitionMemo = {}
        self.recent: dict[bytes, Loaded] = {}
        self.delta: dict[bytes, frozenset[str]] = {}  # a split header's steps, as written
        self.stored_definitions: set[tuple[int, str, int]] = set()  # (partition, id, version)

    def forget_partitions(self) -> None:
        """Partitions were revoked: what is in memory may be another worker's now."""
        self.recent.clear()
        self.delta.clear()
        self.stored_definitions.clear()

    def load(self, key: bytes, name: str, record: dict[str, Any]) -> Loaded:
        """The execution's checkpoint; for its WorkflowStarted, a new execution."""
        recent = self.recent.get(key)
        if recent is not None:
            return recent
        stored = self.table.get(key)
        if stored is not None:
            checkpoint = from_json(stored)
            state = self._state(key, checkpoint["state"])
            loaded: Loaded = (state, checkpoint["origin"], checkpoint.get("applied", {}))
            if state.status is ExecutionStatus.RUNNING:
                self.recent[key] = loaded
                self.delta[key] = frozenset(checkpoint["state"]["steps"])
            return loaded
        if name != "WorkflowStarted":
            raise UnknownExecution(f"{name} for unknown execution {record['execution_id']}")
        pinned = (record["workflow_id"], record["workflow_version"])
        if pinned not in self.memo:  # validating a definition costs more than an event
            self.memo[pinned] = build_definition(from_json(record["definition_json"]))
        state = new_execution(
            record["execution_id"],
            self.memo[pinned],
            from_json(record["input_json"]),
            max_parallel_steps=self.settings.max_parallel_steps,
            parallel_enabled=self.settings.parallel_execution_enabled,
            max_foreach_items=self.settings.max_foreach_items,
        )
        origin = {k: record[k] for k in ORIGIN_FIELDS}
        if record.get("parent"):  # a sub-workflow's child: its outcome goes to the parent
            origin["parent"] = record["parent"]
        return state, origin, None

    def write(self, key: bytes, partition: int, loaded: Loaded) -> None:
        """Write the checkpoint (and, first, its definition, once per partition)."""
        state, origin, applied = loaded
        self._store_definition(partition, state.definition)
        previous = self.recent.get(key)
        if previous is None:
            changed: Iterable[str] = state.steps
        else:
            changed = changed_steps(previous[0].steps, state.steps)
        self._index(key, partition, state, origin, was_running=previous is not None)
        if state.definition.has_waits:
            self._timers(partition, state, origin, None if previous is None else previous[0])
        writes, delta = checkpoint_writes(state, self.delta.get(key, frozenset()), changed)
        for part, value in writes:
            if part is None:
                record = {"state": value, "origin": origin, "applied": applied}
                self.changelog.put(key, to_json_bytes(record), partition)
            else:
                self.changelog.put(stored_part_key(key, part), to_json_bytes(value), partition)
        if state.status is ExecutionStatus.RUNNING:
            self.recent[key] = loaded
            self.delta[key] = delta
        else:  # ended: its next event, if any, reads the table
            self.recent.pop(key, None)
            self.delta.pop(key, None)

    def _index(
        self,
        key: bytes,
        partition: int,
        state: ExecutionState,
        origin: dict[str, Any],
        was_running: bool,
    ) -> None:
        """Keep the running and retire indexes: an execution that starts (or is re-opened)
        gets its running key; one that ends loses it and gets its retire key, whose value
        is its tenant (the intake's key, for when its start id is forgotten)."""
        running = running_key(state.execution_id).encode(errors="surrogateescape")
        due = retire_due(state, self.retention_ms)
        if due is None:
            if not was_running:
                self.changelog.put(running, b"", partition)
            return
        retire = retire_key(due, state.execution_id).encode(errors="surrogateescape")
        self.changelog.put(retire, origin["tenant_id"].encode(), partition)
        if was_running:
            self.changelog.delete(running, partition)

    def _timers(
        self,
        partition: int,
        state: ExecutionState,
        origin: dict[str, Any],
        previous: ExecutionState | None,
    ) -> None:
        """Keep the timer index (`stepstream.workflows.timers`): a key per armed timer,
        whose value is what its due event needs; gone once it fired or the execution
        ended."""
        before = frozenset() if previous is None else armed_timers(previous)
        after = armed_timers(state)
        for gone in before - after:
            self.changelog.delete(gone.encode(errors="surrogateescape"), partition)
        for armed in after - before:
            _, step_id, _ = cast(tuple[int, str, str], split_timer_key(armed))
            due = {**origin, "attempt": state.steps[step_id].attempt}
            self.changelog.put(
                armed.encode(errors="surrogateescape"), to_json_bytes(due), partition
            )

    def running(
        self, partitions: Iterable[int]
    ) -> Iterator[tuple[bytes, ExecutionState, dict[str, Any]]]:
        """The running executions of these partitions, from the running index: what
        recovery re-arms costs what is in flight, not what ever ran."""
        start = RUNNING_PREFIX.encode()
        stop = start[:-1] + bytes([start[-1] + 1])
        for partition in partitions:
            entries = keys_in_range(self.table, partition, start, stop, 2**31, self.partition_of)
            for index_key, _ in entries:
                key = index_key[len(start) :]
                loaded = self.of(key)
                if loaded is not None:
                    yield key, *loaded

    def delete(self, key: bytes, partition: int) -> None:
        """Delete an execution's checkpoint (header and parts): it has left hot state."""
        stored = self.table.get(key)
        header = from_json(stored)["state"] if stored is not None else {}
        for part in stored_parts(header, lambda n: self._part(key, n)):
            self.changelog.delete(stored_part_key(key, part), partition)
        self.changelog.delete(key, partition)
        self.recent.pop(key, None)
        self.delta.pop(key, None)

    def partition_of(self, index_key: bytes) -> int:
        """An index key's partition: its execution id's (memory stores do not know it)."""
        execution_id = index_key.decode(errors="replace").rsplit("/", 1)[-1]
        return partition_index(execution_id.encode(), self.settings.topic_partitions)

    def of(self, key: bytes) -> tuple[ExecutionState, dict[str, Any]] | None:
        """A checkpoint read outside an event (timers, recovery); None for other keys."""
        if key.startswith(INTERNAL_KEY) or split_part_key(key.decode(errors="replace")):
            return None
        stored = self.table.get(key)
        if stored is None:
            return None
        checkpoint = from_json(stored)
        return self._state(key, checkpoint["state"]), checkpoint["origin"]

    def _state(self, key: bytes, data: dict[str, Any]) -> ExecutionState:
        """Read a checkpoint's state, with its parts and the definition it names from the
        memo or from the table's copy in its partition."""
        if "parts" in data:
            data = merge_parts(data, stored_parts(data, lambda n: self._part(key, n)))
        ref = definition_ref(data)
        if ref is not None and ref not in self.memo:
            stored = self.table.get(definition_key(*ref).encode())
            if stored is None:
                raise CheckpointError(f"definition {ref} is not in this partition")
            self.memo[ref] = build_definition(from_json(stored))
        return state_from_dict(data, self.memo)

    def _part(self, key: bytes, part: int) -> dict[str, Any] | None:
        stored = self.table.get(stored_part_key(key, part))
        return None if stored is None else cast(dict[str, Any], from_json(stored))

    def _store_definition(self, partition: int, definition: WorkflowDefinition) -> None:
        known = (partition, definition.id, definition.version)
        if known in self.stored_definitions:
            return
        key = definition_key(definition.id, definition.version).encode()
        if self.table.get(key) is None:
            self.changelog.put(key, to_json_bytes(definition_to_dict(definition)), partition)
        self.stored_definitions.add(known)
