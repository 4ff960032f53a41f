"""A database outage under the pipeline loses nothing: commits are retried until PostgreSQL is back."""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import orjson

from emwatch.embedded import free_port, local_postgres
from emwatch.feed.hub import AlertFeed
from emwatch.ingest.mqtt import make_client
from emwatch.pipeline import Pipeline
from emwatch.settings import Settings
from emwatch.store.db import connect_pool, migrate
from tests.e2e.standalone import seed_one_subject, wait_for


async def count_fixes(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM fixes"))
    finally:
        await conn.close()


async def test_fixes_published_while_postgres_is_down_are_stored_when_it_returns(
    tmp_path: Path, mqtt_url: str
) -> None:
    port = free_port()
    servers = ExitStack()
    dsn = servers.enter_context(local_postgres(tmp_path / "pg", port, fast=True))
    await migrate(dsn)
    await seed_one_subject(dsn)
    settings = Settings(database_url=dsn, mqtt_url=mqtt_url, batch_max_ms=20,
                        mqtt_client_id=f"emwatch-outage-{secrets.token_hex(4)}")
    try:
        async with connect_pool(dsn) as pool, \
                make_client(mqtt_url, f"pub-{secrets.token_hex(4)}", persistent=False) as publisher:
            pipeline = Pipeline(settings, pool, AlertFeed())
            running = asyncio.create_task(pipeline.run())
            await wait_for(lambda: pipeline.mqtt_connected)

            async def publish(ts: int) -> None:
                await publisher.publish("em/v1/devices/d/fix", orjson.dumps({"ts": ts, "lat": 30.3, "lon": 120.1}), qos=1)

            t0 = int(time.time() * 1000)
            await publish(t0)
            await wait_for(lambda: pipeline.batches_done >= 1)

            await asyncio.to_thread(servers.close)  # PostgreSQL goes away
            for i in range(1, 4):
                await publish(t0 + i * 1000)
            await wait_for(lambda: pipeline.messages_received >= 4)
            await asyncio.sleep(1.0)  # several failed commit attempts
            assert not running.done(), "the pipeline must survive the outage"

            servers.enter_context(local_postgres(tmp_path / "pg", port, fast=True))  # and comes back
            deadline = time.monotonic() + 30
            while await _count_or_zero(dsn) < 4:
                assert time.monotonic() < deadline, "fixes were not written after the outage"
                await asyncio.sleep(0.2)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        assert await count_fixes(dsn) == 4
    finally:
        servers.close()


async def _count_or_zero(dsn: str) -> int:
    try:
        return await count_fixes(dsn)
    except (OSError, asyncpg.PostgresError):
        return 0
