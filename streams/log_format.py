"""`STEPSTREAM_LOG_FORMAT=json`: one JSON object per line, for log pipelines. Fields:
`time` (ISO 8601, UTC), `level`, `logger`, `message`, and, where the line is about one,
`execution_id`, `step_id`, `attempt` and `workflow_id` (passed as `extra=`), plus
`exception` with the traceback."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

CONTEXT = ("execution_id", "step_id", "attempt", "workflow_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def use_json(logger: logging.Logger) -> None:
    """Every handler of `logger` writes JSON lines."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
