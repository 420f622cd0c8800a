"""A 3-node KRaft cluster of the tests' own, started by the project's script
(`services.sh up kafka --brokers 3`) on ports of its own, with nodes that can be killed
and restarted."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "local" / "services.sh"
NODES = 3
PORT = 27092  # below the ephemeral range (32768+): a node must never dial itself


def script_env(state: Path, kafka_port: int, **extra: str) -> dict[str, str]:
    """services.sh's environment for a Kafka of the tests' own: its state, its ports."""
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "STEPSTREAM_STATE_DIR": str(state),
        "STEPSTREAM_KAFKA_PORT": str(kafka_port),
        "STEPSTREAM_KAFKA_CONTROLLER_PORT": str(kafka_port + 100),
        "STEPSTREAM_KAFKA_HEAP": "512m",
        **extra,
    }


class KafkaCluster:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = script_env(state, PORT)
        self.bootstrap = ",".join(f"127.0.0.1:{PORT + i}" for i in range(NODES))

    def script(self, action: str) -> None:
        done = subprocess.run(
            ["bash", str(SCRIPT), action, "kafka", "--brokers", str(NODES)],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"services.sh {action} --brokers {NODES} failed:\n{done.stderr}")

    def up(self) -> None:
        """Start the nodes that are not running; returns once every node answers."""
        self.script("up")

    def down(self) -> None:
        self.script("down")
        shutil.rmtree(self.state, ignore_errors=True)

    def pid(self, node: int) -> int:
        return int((self.state / "run" / f"kafka-{node}.pid").read_text())

    def kill(self, node: int) -> None:
        """SIGKILL: no controlled shutdown, the cluster fences the node after its session."""
        os.kill(self.pid(node), signal.SIGKILL)

    def address(self, node: int) -> str:
        return f"127.0.0.1:{PORT + node - 1}"

    async def leaders(self, topics: list[str]) -> Counter[int]:
        """How many partitions of `topics` each node leads."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        return Counter(p["leader"] for t in described for p in t["partitions"] if p["leader"] >= 0)

    async def busiest(self, topics: list[str]) -> int:
        counts = await self.leaders(topics)
        return counts.most_common(1)[0][0] if counts else 1


def start_cluster(state: Path) -> KafkaCluster:
    cluster = KafkaCluster(state)
    shutil.rmtree(state, ignore_errors=True)  # a cluster of an earlier run left behind
    cluster.up()
    asyncio.run(cluster.leaders([]))  # every node answers metadata
    return cluster
