"""The coordinator writes checkpoints to its store and to their changelog itself
(streams.changelog). After a clean stop, the store must hold exactly what the changelog
holds, and know up to which offset (its persisted offset): a restarted worker trusts the
store and reads the changelog only past that offset."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.workers import NOOP_DIAMOND, engine_env, prepare, running_worker

OFFSET_KEY = b"__faust\0offset__"  # where faust's RocksDB store keeps its persisted offset


async def changelog_by_partition(
    settings: Settings, topic: str
) -> dict[int, tuple[dict[bytes, bytes | None], int]]:
    """Per partition: the last value of every key, and the last offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: dict[int, tuple[dict[bytes, bytes | None], int]] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                values, _ = found.get(tp.partition, ({}, -1))
                for record in records:
                    values[record.key] = record.value
                found[tp.partition] = (values, records[-1].offset)
        return found
    finally:
        await consumer.stop()


def stored(path: Path) -> tuple[dict[bytes, bytes], int | None]:
    """A partition's store, read-only: its keys and values, and its persisted offset."""
    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        items = {bytes(k): bytes(v) for k, v in db.items() if k != OFFSET_KEY}
        offset = db.get(OFFSET_KEY)
        return items, int(offset) if offset is not None else None
    finally:
        db.close()


def test_after_a_clean_stop_the_store_holds_what_the_changelog_holds(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(settings, f"test-{run_token}-changelog")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, NOOP_DIAMOND))

    async def run_executions() -> None:
        async with WorkflowClient(engine) as client:
            ids = [
                await client.start_workflow("noop-diamond", {}, f"t{n % 4}", f"c{n}")
                for n in range(60)
            ]
            outcomes = await asyncio.gather(*(client.wait_for(i, timeout=60) for i in ids))
            assert {o.status for o in outcomes} == {"completed"}

    with running_worker(engine, env, "changelog-w1", tmp_path) as worker:
        asyncio.run(run_executions())
    assert worker.process.returncode == 0, worker.log_tail()

    changelog = asyncio.run(
        changelog_by_partition(engine, f"{engine.topic_prefix}-engine-executions-changelog")
    )
    assert len(changelog) == engine.topic_partitions  # 60 executions reach every partition
    for partition, (values, last_offset) in changelog.items():
        [path] = (tmp_path / "changelog-w1").glob(f"**/executions-{partition}.db")
        items, persisted = stored(path)
        assert persisted == last_offset, partition
        assert items == {k: v for k, v in values.items() if v is not None}, partition
