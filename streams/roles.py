"""What a worker process runs.

`coordinator` is the intake and the coordinator: the faust agents and their
changelog-backed tables, in the consumer group `<prefix>-engine`. `executor` and
`persister` are plain consumer groups of their own (`streams.groups`), so they can run in
other processes, on another core, and scale apart from the coordinator. A worker runs all
three unless told otherwise.
"""

from __future__ import annotations

ROLES = ("coordinator", "executor", "persister")
