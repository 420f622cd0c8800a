"""The client library producers use: start, replay and follow executions.

It speaks Kafka and the Avro contracts only; it never imports worker code (a test checks
that importing it loads no faust)."""

from stepstream.client.events import EventNotSent
from stepstream.client.tasks import AnswerRefused
from stepstream.client.workflow_client import (
    Outcome,
    ReplayRefused,
    StartRefused,
    WorkflowClient,
)

__all__ = [
    "AnswerRefused",
    "EventNotSent",
    "Outcome",
    "ReplayRefused",
    "StartRefused",
    "WorkflowClient",
]
