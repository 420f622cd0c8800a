"""The topic plan: what every topic gets, faust's included."""

from __future__ import annotations

from stepstream.streams.settings import Settings
from stepstream.streams.topic_plan import plan_topics


def test_with_three_replicas_every_topic_needs_two_in_sync() -> None:
    plan = plan_topics(Settings(replication_factor=3), queues=("ocr",))
    assert len(plan) == 14 + 1 + 6 + 1  # the engine's, a queue, faust's changelogs, leader
    assert {(s.replication_factor, s.configs.get("min.insync.replicas")) for s in plan} == {
        (3, "2")
    }
    compacted = {s.name for s in plan if s.configs.get("cleanup.policy") == "compact"}
    assert "stepstream.definitions" in compacted
    assert "stepstream-engine-executions-changelog" in compacted
    assert "stepstream.executions" not in compacted


def test_a_single_broker_leaves_the_cluster_default_and_an_explicit_value_wins() -> None:
    assert all("min.insync.replicas" not in s.configs for s in plan_topics(Settings()))
    explicit = plan_topics(Settings(replication_factor=5, min_insync_replicas=3))
    assert {s.configs["min.insync.replicas"] for s in explicit} == {"3"}
