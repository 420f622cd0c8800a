"""Correction 7: a table's persisted changelog offset is saved at commit.

A table's persisted changelog offset is saved at commit, not per record. For every
acknowledged changelog record faust writes "local store holds the changelog up to
offset N" into RocksDB (`Table._on_changelog_sent` -> `Store.set_persisted_offset`): one
RocksDB put and a str/encode per checkpoint written. faust has the deferral for
exactly-once (`TableManager.persist_offset_on_commit`), but its `on_commit` looks the
pending offsets up by the committed *source* partitions, never by the changelog
partitions they are kept under, so they would never be saved. The fix keeps the newest
acknowledged offset per changelog partition in memory and saves them all after each
successful commit (and so at a clean shutdown and at a rebalance, which commit). Safe:
the store itself is written before its changelog record is even sent, so the saved
offset never runs ahead of the store; one that lags only makes recovery read more of
the changelog. After a crash the local stores are wiped anyway (streams.local_store).

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- Collection._on_changelog_sent, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/tables/base.py
- TableManager.on_commit, persist_offset_on_commit, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/tables/manager.py
Upstream: none found.
Way out: retire it when faust's own code does the same (check on every upgrade).
Test: tests/unit/test_persisted_offsets.py.
"""

from __future__ import annotations

from typing import Any

from faust.tables.base import Collection
from faust.tables.manager import TableManager


def _on_changelog_sent(self: Collection, fut: Any) -> None:
    result = fut.result()
    self.app.tables.persist_offset_on_commit(self.data, result.topic_partition, result.offset)


def _on_commit(self: TableManager, offsets: Any) -> None:
    pending, self._pending_persisted_offsets = self._pending_persisted_offsets, {}
    for tp, (store, offset) in pending.items():
        store.set_persisted_offset(tp, offset)


def apply() -> None:
    Collection._on_changelog_sent = _on_changelog_sent  # type: ignore[method-assign]  # noqa: SLF001
    TableManager.on_commit = _on_commit  # type: ignore[method-assign]
