"""faust correction 7: a table's persisted changelog offset is saved once per commit,
the newest acknowledged one, instead of one RocksDB write per changelog record."""

from __future__ import annotations

from types import MethodType, SimpleNamespace
from typing import Any

from faust.tables.base import Collection
from faust.tables.manager import TableManager
from faust.types import TP

from stepstream.streams.faust_fixes import persisted_offsets

CHANGELOG = TP("stepstream-engine-executions-changelog", 3)
SOURCE = TP("stepstream.step-completed", 3)


class RecordingStore:
    def __init__(self) -> None:
        self.saved: list[tuple[TP, int]] = []

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.saved.append((tp, offset))


def acknowledged(offset: int) -> Any:
    """A changelog record's delivery future, as the producer resolves it."""
    result = SimpleNamespace(topic_partition=CHANGELOG, offset=offset)
    return SimpleNamespace(result=lambda: result)


def table_and_manager() -> tuple[Any, Any, RecordingStore]:
    store = RecordingStore()
    manager = SimpleNamespace(_pending_persisted_offsets={})
    manager.persist_offset_on_commit = MethodType(TableManager.persist_offset_on_commit, manager)
    manager.on_commit_tp = MethodType(TableManager.on_commit_tp, manager)
    table = SimpleNamespace(app=SimpleNamespace(tables=manager, in_transaction=False), data=store)
    return table, manager, store


def test_the_newest_acknowledged_offset_is_saved_at_commit_and_not_per_record() -> None:
    table, manager, store = table_and_manager()
    for offset in (5, 9, 7):  # acknowledgements can arrive out of order
        persisted_offsets._on_changelog_sent(table, acknowledged(offset))
    assert store.saved == []
    persisted_offsets._on_commit(manager, {SOURCE: 120})
    assert store.saved == [(CHANGELOG, 9)]
    persisted_offsets._on_commit(manager, {SOURCE: 130})  # nothing new since
    assert store.saved == [(CHANGELOG, 9)]


def test_what_faust_does_without_the_correction() -> None:
    table, manager, store = table_and_manager()
    for offset in (5, 9, 7):
        Collection._on_changelog_sent(table, acknowledged(offset))
    assert store.saved == [(CHANGELOG, 5), (CHANGELOG, 9), (CHANGELOG, 7)]  # one per record
    # faust's own deferral (for exactly-once) looks offsets up by the source partition
    # committed, while they are kept by changelog partition: they are never saved.
    manager._pending_persisted_offsets = {CHANGELOG: (store, 9)}
    store.saved.clear()
    TableManager.on_commit(manager, {SOURCE: 120})
    assert store.saved == []
