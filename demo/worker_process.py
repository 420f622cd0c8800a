"""Run `stepstream worker` as a child process, and know when it is ready.

Used by `stepstream run` and by the integration tests, which need real worker
processes (a SIGKILL test cannot kill a coroutine).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.definitions import register_definition
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, declare_topics
from stepstream.workflows import StepDefinition, WorkflowDefinition

PROBE = WorkflowDefinition("probe", 1, "readiness probe", (StepDefinition("only", "noop"),))


class WorkerProcess:
    def __init__(
        self, name: str, env: dict[str, str], workdir: Path, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")  # a restarted worker appends
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "stepstream",
                "worker",
                "--name",
                name,
                "--data-dir",
                str(workdir / name),
                "--loglevel",
                "info",
                *extra_args,
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def prepare(settings: Settings, *definitions: WorkflowDefinition) -> None:
    """Declare the topics and register the probe and the given definitions."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    await declare_topics(kafka_access(settings), settings)
    for definition in (PROBE, *definitions):
        await register_definition(kafka_access(settings), names.definitions, definition)


async def wait_until_ready(
    settings: Settings, workers: list[WorkerProcess], timeout: float
) -> None:
    """Ready means: a probe execution started now completes."""
    deadline = time.monotonic() + timeout
    async with WorkflowClient(settings) as client:
        while True:
            for worker in workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited:\n{worker.log_tail()}")
            # A new user each time, so that a rate limit never mistakes probes for a burst.
            execution_id = await client.start_workflow(
                "probe", {}, "probe", f"probe-{time.time_ns()}"
            )
            try:
                await client.wait_for(execution_id, timeout=5)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    tails = "\n".join(w.log_tail() for w in workers)
                    raise TimeoutError(f"workers not ready in time:\n{tails}") from None
