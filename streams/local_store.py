"""Delivery rule 3, no phantom state: a worker's local table store is trusted only after a
clean shutdown.

faust writes a table's local store (RocksDB) at once and its changelog record later,
through the producer. A worker killed in between leaves the store holding writes the
changelog never received; on restart faust recovers only what the changelog has beyond
the offsets the store remembers, so those writes would stay, and an event redelivered
to the worker would find "its" checkpoint and be taken for a duplicate. Seen here: a
WorkflowStarted whose execution then never started, on the restarted worker only.

So a clean stop leaves a mark in the data directory, and a start without that mark
deletes the table stores: faust then rebuilds them from their changelogs. A mark older
than the changelogs keep their tombstones (`streams.tables`) is not trusted either: the
deletes made while the worker was away may be gone from the changelog, and its store
would keep what retention removed.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

CLEAN_MARK = "clean-shutdown"
TRUSTED_FOR_SECONDS = 23 * 3600  # under the changelogs' delete.retention.ms (a day)


def trust_or_forget(data_dir: Path, table_dir: Path) -> bool:
    """Called before the worker starts; True when the local stores were kept."""
    data_dir.mkdir(parents=True, exist_ok=True)
    mark = data_dir / CLEAN_MARK
    clean = mark.exists()
    stale = clean and time.time() - mark.stat().st_mtime > TRUSTED_FOR_SECONDS
    mark.unlink(missing_ok=True)  # from now on the stores change: a kill leaves no mark
    if (clean and not stale) or not table_dir.exists():
        return True
    why = "stopped too long ago to trust" if stale else "the last stop was not clean"
    log.warning("%s: %s; rebuilding the tables from their changelogs", data_dir, why)
    shutil.rmtree(table_dir)
    return False


def mark_clean(data_dir: Path) -> None:
    """Called once every agent has stopped and the producer has flushed."""
    (data_dir / CLEAN_MARK).touch()
