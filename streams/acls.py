"""The least Kafka ACLs each kind of client needs, for a cluster with an authorizer.

README "Running on your Kafka" prints them as `kafka-acls.sh` commands
(`stepstream topics acls ROLE PRINCIPAL`); tests/integration/test_secured_kafka.py grants
exactly these on a broker with the ACL authorizer and runs the engine with them.

- worker: every topic and group under the prefix. It creates its topics (and faust its
  changelogs, `<prefix>-engine-...`), reads and writes them, and commits in the groups
  `<prefix>-engine`, `<prefix>-steps`, `<prefix>-executor`, `<prefix>-persister`... No
  transactional id: the engine does not use Kafka transactions.
- producer: a service that starts executions (checking the definition is registered) and
  waits for their outcomes; it cannot read steps' inputs or outputs.
- consumer: a downstream service reading the public feeds in a group of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from stepstream.streams.topics import TopicNames


@dataclass(frozen=True)
class Acl:
    resource: str  # topic, group or cluster
    name: str
    pattern: str  # literal or prefixed
    operation: str  # Read, Write, Describe, Create, DescribeConfigs

    def command(self, principal: str, bootstrap: str) -> str:
        resource = {"topic": "--topic", "group": "--group", "cluster": "--cluster"}[self.resource]
        target = "" if self.resource == "cluster" else f" {self.name}"
        return (
            f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal "
            f"{principal} --operation {self.operation} {resource}{target}"
            f" --resource-pattern-type {self.pattern}"
        )


ROLES = ("worker", "producer", "consumer")


def acls_for(role: str, prefix: str, group: str = "") -> list[Acl]:
    names = TopicNames.for_prefix(prefix)
    if role == "worker":
        return (
            [
                Acl("topic", f"{prefix}.", "prefixed", operation)
                for operation in ("Create", "Describe", "DescribeConfigs", "Read", "Write")
            ]
            + [
                Acl("topic", f"{prefix}-", "prefixed", operation)  # faust's changelogs
                for operation in ("Create", "Describe", "DescribeConfigs", "Read", "Write")
            ]
            + [
                Acl("group", f"{prefix}-", "prefixed", "Read"),
                Acl("group", f"{prefix}-", "prefixed", "Describe"),
            ]
        )
    if role == "producer":
        return [
            Acl("topic", names.workflow_start, "literal", "Write"),
            Acl("topic", names.workflow_start, "literal", "Describe"),
            Acl("topic", names.replay, "literal", "Describe"),
            # The catalog: `start` checks the workflow is registered before sending.
            Acl("topic", names.definitions, "literal", "Read"),
            Acl("topic", names.definitions, "literal", "Describe"),
            Acl("topic", names.workflow_completed, "literal", "Read"),
            Acl("topic", names.workflow_completed, "literal", "Describe"),
            Acl("topic", names.workflow_rejected, "literal", "Read"),
            Acl("topic", names.workflow_rejected, "literal", "Describe"),
        ]
    if role == "consumer":
        feeds = (names.step_completed, names.workflow_completed)
        return [
            Acl("topic", feed, "literal", operation)
            for feed in feeds
            for operation in ("Read", "Describe")
        ] + [Acl("group", group or f"{prefix}-downstream", "literal", "Read")]
    raise ValueError(f"unknown role {role!r}: {', '.join(ROLES)}")
