"""A fix implying impossible speed is stored marked suspect, raises location_anomaly, and no zone alert."""

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


async def test_teleporting_fix_is_stored_as_suspect(fresh_database_url: str, mqtt_url: str) -> None:
    await migrate(fresh_database_url)
    await seed_one_subject(
        fresh_database_url,
        "INSERT INTO zones (id, kind, geometry, subject_id) VALUES ('county', 'inclusion',"
        " '{\"type\": \"Polygon\", \"coordinates\": [[[120, 30], [120.2, 30], [120.2, 30.2], [120, 30.2], [120, 30]]]}',"
        " 's');",
    )
    db = await asyncpg.connect(fresh_database_url)
    settings = Settings(database_url=fresh_database_url, mqtt_url=mqtt_url, batch_max_ms=20,
                        mqtt_client_id=f"emwatch-suspect-{secrets.token_hex(4)}", max_speed_kmh=250,
                        zone_open_fixes=1, zone_open_s=0)
    async with connect_pool(fresh_database_url) as pool, \
            make_client(mqtt_url, f"pub-{secrets.token_hex(4)}", persistent=False) as publisher:
        feed = AlertFeed()
        pipeline = Pipeline(settings, pool, feed)
        running = asyncio.create_task(pipeline.run())
        await wait_for(lambda: pipeline.mqtt_connected)
        t0 = int(time.time() * 1000)
        for dt, lon in [(0, 120.1), (10_000, 121.5)]:  # 135 km in 10 s, out of the county
            await publisher.publish("em/v1/devices/d/fix", orjson.dumps({"ts": t0 + dt, "lat": 30.1, "lon": lon,
                                                                        "acc": 10}), qos=1)
        await wait_for(lambda: pipeline.messages_received >= 2 and pipeline.idle and pipeline.batches_done >= 1)
        await wait_for(lambda: feed.last_seq >= 1)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    rows = await db.fetch("SELECT lon, suspect FROM fixes ORDER BY ts")
    rules = await db.fetch("SELECT rule FROM alerts")
    await db.close()
    assert [(r["lon"], r["suspect"]) for r in rows] == [(120.1, False), (121.5, True)]
    assert [r["rule"] for r in rules] == ["location_anomaly"]
