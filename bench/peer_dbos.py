"""DBOS Transact beside the engine, for bench/peers.py; runs in the peers' virtualenv.

    .venv-peers/bin/python bench/peer_dbos.py [--executions 3000] [--latency-runs 100]

The diamond is a DBOS workflow of four steps, steps 2 and 3 started together
(asyncio.gather in an async workflow). Its system database is a database of its own on
the project's PostgreSQL (DATABASE_URL), created here and dropped at the end. DBOS is a
library: the workflows run in the process that starts them, so this one process is both
DBOS's worker and its client; PostgreSQL's CPU is counted beside it.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version

import psycopg
from dbos import DBOS
from peer_harness import arguments, describe, measure, pids_of

DATABASE = "stepstream_peer_dbos"


@DBOS.step()
async def step(seconds: float) -> bool:
    if seconds:
        await asyncio.sleep(seconds)
    return True


@DBOS.workflow()
async def diamond(seconds: float) -> None:
    await step(seconds)
    await asyncio.gather(step(seconds), step(seconds))
    await step(seconds)


class DbosDiamonds:
    def processes(self) -> dict[str, list[int]]:
        return {"app (workflows and client)": [os.getpid()], "postgres": pids_of("postgres")}

    async def run(self, executions: int, seconds: float = 0.0) -> None:
        handles = [await DBOS.start_workflow_async(diamond, seconds) for _ in range(executions)]
        await asyncio.gather(*(handle.get_result() for handle in handles))


async def session(database_url: str, executions: int, latency_runs: int) -> None:
    config = {"name": "stepstream-peer", "system_database_url": database_url}
    DBOS(config={**config, "log_level": "WARNING"})  # type: ignore[typeddict-item]
    DBOS.launch()
    try:
        figures = await measure("dbos", version("dbos"), DbosDiamonds(), executions, latency_runs)
    finally:
        DBOS.destroy()
    print(describe(figures))
    print(figures.line())


def main() -> None:
    args = arguments(__doc__)
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
        try:
            own = url.rsplit("/", 1)[0] + f"/{DATABASE}"
            asyncio.run(session(own, args.executions, args.latency_runs))
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
