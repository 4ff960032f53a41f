"""A database outage under the pipeline loses nothing and silences nothing: alerts go out from memory,
writes wait in a bounded buffer (back-pressure when full), and everything is stored, with the seqs the
feed already showed, when PostgreSQL is back. Nothing is acknowledged to the broker before it is stored."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import orjson

from emwatch.embedded import local_postgres
from emwatch.feed.hub import AlertFeed
from emwatch.ingest.mqtt import make_client
from emwatch.model import AlertEvent
from emwatch.pipeline import Pipeline
from emwatch.server_process import free_port
from emwatch.settings import Settings
from emwatch.store.db import connect_pool, migrate
from tests.e2e.conftest import INSIDE, OUTSIDE, feed, now_ms, running_service
from tests.e2e.standalone import seed_one_subject, wait_for

# Subject 's' (device 'd') must stay inside this square around (120.10, 30.30).
HOME_ZONE = (
    "INSERT INTO zones (id, kind, name, subject_id, geometry) VALUES ('z-home', 'inclusion', 'home', 's',"
    " '{\"type\": \"Polygon\", \"coordinates\": [[[120.09, 30.29], [120.11, 30.29], [120.11, 30.31],"
    " [120.09, 30.31], [120.09, 30.29]]]}');"
)


class PrivatePostgres:
    """A PostgreSQL of the test's own on a fixed port, that the test stops and starts again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self._servers = ExitStack()
        self.dsn = self._servers.enter_context(local_postgres(data_dir, self.port, fast=True))

    async def stop(self) -> None:
        await asyncio.to_thread(self._servers.close)

    async def start(self) -> None:
        await asyncio.to_thread(self._servers.enter_context, local_postgres(self.data_dir, self.port, fast=True))

    def close(self) -> None:
        self._servers.close()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def wait_for_value(self, sql: str, expected: Any, timeout: float = 30.0) -> None:
        """Poll `sql` until it returns `expected` (connection refusals count as not yet)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await self.fetchval(sql) == expected:
                    return
            except (OSError, asyncpg.PostgresError):
                pass
            assert time.monotonic() < deadline, f"{sql!r} never returned {expected!r}"
            await asyncio.sleep(0.1)


@contextmanager
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres(tmp_path / "pg")
    try:
        yield pg
    finally:
        pg.close()


@asynccontextmanager
async def standalone(pg: PrivatePostgres, mqtt_url: str, client_id: str, **overrides: Any
                     ) -> AsyncIterator[tuple[Pipeline, AlertFeed, aiomqtt.Client]]:
    """A Pipeline of its own (no HTTP) on the private database, and a publisher."""
    settings = Settings(database_url=pg.dsn, mqtt_url=mqtt_url, batch_max_ms=20, mqtt_client_id=client_id,
                        zone_open_fixes=1, zone_open_s=0, zone_clear_fixes=1, zone_clear_s=0,
                        max_speed_kmh=1e9).model_copy(update=overrides)
    hub = AlertFeed()
    async with connect_pool(pg.dsn) as pool, \
            make_client(mqtt_url, f"pub-{secrets.token_hex(4)}", persistent=False) as publisher:
        pipeline = Pipeline(settings, pool, hub)
        running = asyncio.create_task(pipeline.run())
        try:
            await wait_for(lambda: pipeline.mqtt_connected)
            yield pipeline, hub, publisher
            assert not running.done(), "the pipeline must survive the outage"
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def publish(publisher: aiomqtt.Client, device: str, ts: int, lon_lat: tuple[float, float]) -> None:
    lon, lat = lon_lat
    await publisher.publish(f"em/v1/devices/{device}/fix", orjson.dumps({"ts": ts, "lat": lat, "lon": lon}),
                            qos=1)


async def seeded(pg: PrivatePostgres) -> str:
    """Subject 's' with its home zone and a bracelet of a name no other test publishes as."""
    await migrate(pg.dsn)
    device = f"d-{secrets.token_hex(4)}"
    await seed_one_subject(pg.dsn, HOME_ZONE + f"UPDATE devices SET id = '{device}' WHERE id = 'd';")
    return device


async def test_fixes_published_while_postgres_is_down_are_stored_when_it_returns(
    tmp_path: Path, mqtt_url: str
) -> None:
    with private_postgres(tmp_path) as pg:
        device = await seeded(pg)
        async with standalone(pg, mqtt_url, f"emwatch-outage-{secrets.token_hex(4)}") as (pipeline, _, pub):
            t0 = now_ms()
            await publish(pub, device, t0, INSIDE)
            await wait_for(lambda: pipeline.batches_done >= 1 and pipeline.idle)

            await pg.stop()
            for i in range(1, 4):
                await publish(pub, device, t0 + i * 1000, INSIDE)
            await wait_for(lambda: pipeline.messages_received >= 4)
            await wait_for(lambda: pipeline.committer.database_up is False)  # a commit failed: retrying

            await pg.start()
            await pg.wait_for_value(f"SELECT count(*) FROM fixes WHERE device_id = '{device}'", 4)
            await wait_for(lambda: pipeline.idle)
        assert await pg.fetchval("SELECT count(*) FROM fixes WHERE device_id = $1", device) == 4


async def test_alert_reaches_the_websocket_during_the_outage_and_is_stored_with_that_seq(
    tmp_path: Path, mqtt_url: str
) -> None:
    with private_postgres(tmp_path) as pg:
        await migrate(pg.dsn)
        async with running_service(pg.dsn, mqtt_url) as (service, _):
            subject, device = await service.add_subject()
            await service.publish_fix(device, *INSIDE)
            await service.drain()
            async with feed(service, subject) as client:  # connected (authorised, audited) before the outage
                await wait_for(lambda: service.pipeline.feed.subscriber_count == 1)
                # the feed subscribes before it accepts and audits after: wait for the audit row too
                await pg.wait_for_value("SELECT count(*) FROM audit_log WHERE action = 'feed.connect'", 1)
                await pg.stop()
                t0 = time.monotonic()
                ts = await service.publish_fix(device, *OUTSIDE)
                alert = await client.next(timeout=10)
                assert time.monotonic() - t0 < 5, "the alert must not wait for the database"
                assert (alert["type"], alert["rule"], alert["ts"]) == ("alert", "zone_exit", ts)
                assert not service.pipeline.committer.database_up and not service.pipeline.idle

                await pg.start()
                await pg.wait_for_value(f"SELECT count(*) FROM alert_events WHERE seq = {alert['seq']}", 1)
                await wait_for(lambda: service.pipeline.idle, timeout=30)
            stored = await pg.fetchval(
                "SELECT json_build_object('id', e.alert_id, 'type', e.type, 'rule', a.rule, 'subject', a.subject_id)"
                " FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.seq = $1", alert["seq"])
            assert orjson.loads(stored) == {"id": alert["id"], "type": "alert", "rule": "zone_exit",
                                            "subject": subject}
            assert await pg.fetchval("SELECT count(*) FROM fixes WHERE device_id = $1", device) == 2


async def test_nothing_is_acknowledged_before_it_is_stored(tmp_path: Path, mqtt_url: str) -> None:
    client_id = f"emwatch-outage-ack-{secrets.token_hex(4)}"
    with private_postgres(tmp_path) as pg:
        device = await seeded(pg)
        t0 = now_ms()
        published: list[AlertEvent] = []
        async with standalone(pg, mqtt_url, client_id) as (pipeline, hub, pub):
            await pg.stop()
            with hub.subscribe() as sub:
                for i, where in enumerate([INSIDE, OUTSIDE, OUTSIDE]):
                    await publish(pub, device, t0 + i * 1000, where)
                published = await asyncio.wait_for(sub.next_events(), 10)  # out while the database is down
            await wait_for(lambda: pipeline.messages_received >= 3)
            # The service dies during the outage: had it acknowledged anything, the broker would not resend it.
        assert [(e.type, e.ts) for e in published] == [("alert", t0 + 1000)]

        await pg.start()
        async with standalone(pg, mqtt_url, client_id) as (again, _, _):  # same broker session
            await wait_for(lambda: again.messages_received >= 3 and again.idle, timeout=20)
        assert await pg.fetchval("SELECT count(*) FROM fixes WHERE device_id = $1", device) == 3
        # Nothing was committed before the crash, so the seq counter starts where it did: same seq again.
        assert await pg.fetchval("SELECT array_agg(seq) FROM alert_events") == [published[0].seq]


async def test_full_write_buffer_stops_reading_from_the_broker_and_drops_nothing(
    tmp_path: Path, mqtt_url: str
) -> None:
    fixes = 40
    with private_postgres(tmp_path) as pg:
        device = await seeded(pg)
        async with standalone(pg, mqtt_url, f"emwatch-outage-bp-{secrets.token_hex(4)}", batch_max_fixes=1,
                              queue_max_batches=1, commit_buffer_max_batches=2) as (pipeline, _, pub):
            await pg.stop()
            t0 = now_ms()
            for i in range(fixes):
                await publish(pub, device, t0 + i * 1000, INSIDE)
            await wait_for(lambda: len(pipeline.writes) == 2)  # the bound is reached...
            received = pipeline.messages_received
            await asyncio.sleep(1.0)  # (a stretch of time in which nothing must move)
            assert len(pipeline.writes) == 2, "the write buffer must hold its bound"
            assert pipeline.messages_received == received < fixes, "a full buffer must stop consumption"

            await pg.start()
            await pg.wait_for_value(f"SELECT count(*) FROM fixes WHERE device_id = '{device}'", fixes)
            await wait_for(lambda: pipeline.idle)
        assert await pg.fetchval("SELECT count(DISTINCT ts) FROM fixes WHERE device_id = $1", device) == fixes
