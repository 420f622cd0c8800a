"""What a worker's agents and steps use beside Kafka: the PostgreSQL pool and the Redis
client. Both are made on first use, so a worker whose steps never touch the database
never connects to it. The composition root (`stepstream.worker`) builds one per worker
and hands each agent and step package what it needs."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.asyncio as aioredis


class Resources:
    def __init__(self, database_url: str, redis_url: str) -> None:
        self._database_url = database_url
        self._redis_url = redis_url
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._redis: aioredis.Redis | None = None

    async def database(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self._database_url, min_size=1, max_size=10)
            return self._pool

    def redis(self) -> aioredis.Redis:
        """Short socket timeouts: a Redis that is down must cost milliseconds, not seconds."""
        if self._redis is None:
            self._redis = aioredis.from_url(
                self._redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        return self._redis

    async def close(self) -> None:
        async with self._pool_lock:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
