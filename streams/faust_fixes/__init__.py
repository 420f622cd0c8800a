"""Corrections to faust-streaming 0.15.3 (with aiokafka 0.14), one module each, applied
from here when the engine is created.

Each module says what goes wrong in faust, names the faust code it replaces or wraps
(with a link), the upstream issue where one exists, the way out (the upstream fix that
retires it) and its test. They were written against the versions in `WRITTEN_FOR`:
`apply` refuses any other, so an upgrade is a decision (re-check each correction against
the code it names, then add the version), never an accident.

 1. pause_in_aiokafka: paused partitions are paused in aiokafka too.
 2. seek_never_committed: partitions nobody committed are read again from the beginning.
 3. flush_waits_for_delivery: the flush before a commit waits for every delivery.
 4. drain_fast_path: the drain loop's callback runs without tasks when it can.
 5. commit_offsets: the offset to commit never skips an unacknowledged head.
 6. skipped_not_acked: an event faust skips is not acknowledged.
 7. persisted_offsets: a table's persisted changelog offset is saved at commit.
 8. livelock_detector: the livelock detector leaves paused partitions alone.
 9. drain_read_offsets: the drain loop never drops an event as already read.
10. seek_with_flow_stopped: stream partitions are sought back with the flow stopped.
11. create_topic_retries: a topic faust creates survives a broker that just died.

Beside them, streams/aiokafka_fixes.py corrects aiokafka's client alone (a client whose known
brokers all failed asks the bootstrap servers again); every Kafka client the engine makes
applies it, the client library and the CLI too, which never import faust.
"""

from __future__ import annotations

from importlib.metadata import version

from stepstream.streams.faust_fixes import (
    commit_offsets,
    create_topic_retries,
    drain_fast_path,
    drain_read_offsets,
    flush_waits_for_delivery,
    livelock_detector,
    pause_in_aiokafka,
    persisted_offsets,
    seek_never_committed,
    seek_with_flow_stopped,
    skipped_not_acked,
)

# The distributions the corrections were written against, and the versions checked.
WRITTEN_FOR = {"faust-streaming": ("0.15.3",), "aiokafka": ("0.14.",)}

CORRECTIONS = (
    pause_in_aiokafka,
    seek_never_committed,
    flush_waits_for_delivery,
    drain_fast_path,
    commit_offsets,
    skipped_not_acked,
    persisted_offsets,
    livelock_detector,
    drain_read_offsets,
    seek_with_flow_stopped,
    create_topic_retries,
)


class UnsupportedFaust(RuntimeError):
    """The installed faust or aiokafka is not a version the corrections were written for."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    found = installed or {name: version(name) for name in WRITTEN_FOR}
    for name, prefixes in WRITTEN_FOR.items():
        if not any(
            found[name] == p or (p.endswith(".") and found[name].startswith(p)) for p in prefixes
        ):
            raise UnsupportedFaust(
                f"{name} {found[name]} is installed; stepstream's corrections to faust"
                f" (stepstream.streams.faust_fixes) were written for {name}"
                f" {' or '.join(p + ('x' if p.endswith('.') else '') for p in prefixes)}."
                " Install that version, or re-check each correction against the code it"
                " names and add the version to WRITTEN_FOR."
            )


_applied = False


def apply() -> None:
    """Apply every correction, once per process."""
    global _applied
    if _applied:
        return
    check_versions()
    for correction in CORRECTIONS:
        correction.apply()
    _applied = True
