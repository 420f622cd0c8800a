"""The pure workflow core: definitions, validation, planning and the execution state
machine. No I/O, no Kafka, no database: a test keeps it that way."""

from stepstream.workflows.checkpoint import CheckpointError, state_from_dict, state_to_dict
from stepstream.workflows.definition import (
    DefaultPolicies,
    RetryPolicy,
    StepDefinition,
    WorkflowDefinition,
)
from stepstream.workflows.execution import (
    Command,
    CompleteWorkflow,
    EmitStepReady,
    Event,
    ExecutionState,
    ExecutionStatus,
    FailWorkflow,
    Replay,
    ReplayAction,
    ScheduleRetry,
    ScheduleTimeout,
    Started,
    StepCompleted,
    StepFailed,
    StepStatus,
    Tick,
    announce,
    new_execution,
    reduce,
    replay_applies,
)
from stepstream.workflows.loading import definition_to_dict, format_for, parse_definition
from stepstream.workflows.planning import Plan, describe, plan
from stepstream.workflows.rendering import to_dot, to_mermaid
from stepstream.workflows.validation import InvalidDefinition, Problem, build_definition, validated

__all__ = [
    "CheckpointError",
    "Command",
    "CompleteWorkflow",
    "DefaultPolicies",
    "EmitStepReady",
    "Event",
    "ExecutionState",
    "ExecutionStatus",
    "FailWorkflow",
    "InvalidDefinition",
    "Plan",
    "Problem",
    "Replay",
    "ReplayAction",
    "RetryPolicy",
    "ScheduleRetry",
    "ScheduleTimeout",
    "Started",
    "StepCompleted",
    "StepDefinition",
    "StepFailed",
    "StepStatus",
    "Tick",
    "WorkflowDefinition",
    "announce",
    "build_definition",
    "definition_to_dict",
    "describe",
    "format_for",
    "new_execution",
    "parse_definition",
    "plan",
    "reduce",
    "replay_applies",
    "state_from_dict",
    "state_to_dict",
    "to_dot",
    "to_mermaid",
    "validated",
]
