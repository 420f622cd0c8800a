"""Temporal beside the engine, for bench/peers.py; runs in the peers' virtualenv.

    .venv-peers/bin/python bench/peer_temporal.py [--executions 3000] [--latency-runs 100]

The `temporal` CLI's dev server (built by `make bench-peers`; the SDK's own download of
it needs the internet) with its SQLite store in a file, one Python worker process (the
`temporalio` SDK, async activities), and this process as the client starting workflows.
Counted: the server, the worker and this client.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path

from peer_harness import arguments, describe, measure, peers_dir
from peer_temporal_flows import TASK_QUEUE, Diamond, step
from temporalio.client import Client
from temporalio.worker import Worker

PORT = 17233  # the frontend; below the ephemeral range like every test port here
STARTS_IN_FLIGHT = 200


class TemporalDiamonds:
    def __init__(
        self, client: Client, server: subprocess.Popen[bytes], worker: subprocess.Popen[bytes]
    ) -> None:
        self.client = client
        self.server = server
        self.worker = worker

    def processes(self) -> dict[str, list[int]]:
        return {"server": [self.server.pid], "worker": [self.worker.pid], "client": [os.getpid()]}

    async def run(self, executions: int, seconds: float = 0.0) -> None:
        gate = asyncio.Semaphore(STARTS_IN_FLIGHT)

        async def one() -> None:
            async with gate:
                handle = await self.client.start_workflow(
                    Diamond.run, seconds, id=str(uuid.uuid4()), task_queue=TASK_QUEUE
                )
            await handle.result()

        await asyncio.gather(*(one() for _ in range(executions)))


def temporal_binary() -> Path:
    binary = peers_dir() / "bin" / "temporal"
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: run `make bench-peers` first")
    return binary


def start_server(workdir: Path) -> subprocess.Popen[bytes]:
    command = [str(temporal_binary()), "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
    options = ["--port", str(PORT), "--db-filename", str(workdir / "temporal.db")]
    server = subprocess.Popen(  # noqa: S603 - the binary make bench-peers built
        [*command, *options, "--log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the Temporal dev server did not start") from None
            time.sleep(0.2)  # polling the port a process is opening


async def serve() -> None:
    """The worker process: one Worker on the task queue until terminated."""
    client = await Client.connect(f"127.0.0.1:{PORT}")
    worker = Worker(client, task_queue=TASK_QUEUE, workflows=[Diamond], activities=[step])
    await worker.run()


async def drive(server: subprocess.Popen[bytes], executions: int, latency_runs: int) -> None:
    worker = subprocess.Popen([sys.executable, __file__, "--worker"])  # noqa: S603
    try:
        client = await Client.connect(f"127.0.0.1:{PORT}")
        diamonds = TemporalDiamonds(client, server, worker)
        figures = await measure(
            "temporal", version("temporalio"), diamonds, executions, latency_runs
        )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    print(describe(figures))
    print(figures.line())


def main() -> None:
    if sys.argv[1:] == ["--worker"]:
        asyncio.run(serve())
        return
    args = arguments(__doc__)
    with tempfile.TemporaryDirectory(prefix="stepstream-temporal-") as workdir:
        server = start_server(Path(workdir))
        try:
            asyncio.run(drive(server, args.executions, args.latency_runs))
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
