"""Delivery rule 3: table stores survive only a clean stop."""

from __future__ import annotations

import os
import time
from pathlib import Path

from stepstream.streams.local_store import (
    CLEAN_MARK,
    TRUSTED_FOR_SECONDS,
    mark_clean,
    trust_or_forget,
)


def stores(tmp_path: Path) -> tuple[Path, Path]:
    data_dir = tmp_path / "missing-parent" / "worker"
    table_dir = data_dir / "app-data" / "v1" / "tables"
    return data_dir, table_dir


def test_a_first_start_creates_the_data_directory(tmp_path: Path) -> None:
    data_dir, table_dir = stores(tmp_path)
    assert trust_or_forget(data_dir, table_dir)
    assert data_dir.is_dir()


def test_stores_left_by_a_kill_are_deleted(tmp_path: Path) -> None:
    data_dir, table_dir = stores(tmp_path)
    trust_or_forget(data_dir, table_dir)
    (table_dir / "executions.db").mkdir(parents=True)  # written, then killed: no mark
    assert not trust_or_forget(data_dir, table_dir)
    assert not table_dir.exists()


def test_stores_left_by_a_clean_stop_are_kept_once(tmp_path: Path) -> None:
    data_dir, table_dir = stores(tmp_path)
    trust_or_forget(data_dir, table_dir)
    (table_dir / "executions.db").mkdir(parents=True)
    mark_clean(data_dir)
    assert trust_or_forget(data_dir, table_dir)
    assert (table_dir / "executions.db").is_dir()
    # The mark is spent at start: a kill of this run must not be mistaken for clean.
    assert not trust_or_forget(data_dir, table_dir)


def test_stores_stopped_longer_ago_than_tombstones_are_kept_are_rebuilt(tmp_path: Path) -> None:
    """Retention's deletes made while the worker was away may have left the changelog."""
    data_dir, table_dir = stores(tmp_path)
    trust_or_forget(data_dir, table_dir)
    (table_dir / "executions.db").mkdir(parents=True)
    mark_clean(data_dir)
    long_ago = time.time() - TRUSTED_FOR_SECONDS - 60
    os.utime(data_dir / CLEAN_MARK, (long_ago, long_ago))
    assert not trust_or_forget(data_dir, table_dir)
    assert not table_dir.exists()
