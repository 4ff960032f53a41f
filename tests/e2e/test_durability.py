"""Ack after durable: a fix received but not yet committed when the service dies is redelivered by
the broker (persistent session, PUBACK withheld until commit) and stored exactly once."""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
import orjson

from emwatch.feed.hub import AlertFeed
from emwatch.ingest.mqtt import make_client
from emwatch.pipeline import Pipeline
from emwatch.settings import Settings
from emwatch.store.db import connect_pool, migrate
from tests.e2e.standalone import seed_one_subject, wait_for


async def test_fix_in_flight_when_the_service_dies_is_redelivered_and_stored_once(
    fresh_database_url: str, mqtt_url: str
) -> None:
    await migrate(fresh_database_url)
    await seed_one_subject(fresh_database_url)
    setup = await asyncpg.connect(fresh_database_url)
    settings = Settings(
        database_url=fresh_database_url, mqtt_url=mqtt_url, batch_max_ms=20,
        mqtt_client_id=f"emwatch-durability-{secrets.token_hex(4)}",
    )
    async with connect_pool(fresh_database_url) as pool:
        first = Pipeline(settings, pool, AlertFeed())
        running = asyncio.create_task(first.run())
        await wait_for(lambda: first.mqtt_connected)

        # Hold the fixes table: the pipeline receives the fix but cannot commit it.
        blocker = await asyncpg.connect(fresh_database_url)
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE fixes IN ACCESS EXCLUSIVE MODE")

        async with make_client(mqtt_url, f"pub-{secrets.token_hex(4)}", persistent=False) as publisher:
            fix = {"ts": int(time.time() * 1000), "lat": 30.3, "lon": 120.1}
            await publisher.publish("em/v1/devices/d/fix", orjson.dumps(fix), qos=1)
        await wait_for(lambda: first.messages_received == 1 and not first.idle)

        running.cancel()  # the service dies mid-commit, before any PUBACK
        await asyncio.gather(running, return_exceptions=True)
        await lock.rollback()
        await blocker.close()
        assert await setup.fetchval("SELECT count(*) FROM fixes") == 0

        second = Pipeline(settings, pool, AlertFeed())  # same client id: same broker session
        running = asyncio.create_task(second.run())
        await wait_for(lambda: second.messages_received >= 1 and second.idle)
        await wait_for(lambda: second.batches_done >= 1)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    assert await setup.fetchval("SELECT count(*) FROM fixes WHERE device_id = 'd'") == 1
    await setup.close()
