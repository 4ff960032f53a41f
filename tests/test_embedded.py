"""The embedded servers start, serve, stop, and keep their data for the next start."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import asyncpg

from emwatch.embedded import INGEST_SETTINGS, local_mosquitto, local_postgres, services
from emwatch.server_process import free_port
from emwatch.settings import Settings


async def test_postgres_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    with local_postgres(tmp_path / "pg", fast=True) as dsn:
        assert urlsplit(dsn).path == "/emwatch"
        conn = await asyncpg.connect(dsn)
        await conn.execute("CREATE TABLE survivor (id int); INSERT INTO survivor VALUES (42)")
        await conn.close()

    with local_postgres(tmp_path / "pg", port=free_port(), fast=True) as dsn:
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("SELECT id FROM survivor") == 42
        await conn.close()


async def test_postgres_runs_with_the_settings_given(tmp_path: Path) -> None:
    with local_postgres(tmp_path / "pg", fast=True, settings=INGEST_SETTINGS) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            for setting in INGEST_SETTINGS:
                name, value = setting.split("=")
                assert await conn.fetchval(f"SHOW {name}") == value
        finally:
            await conn.close()


def test_the_compose_database_runs_with_the_ingest_settings() -> None:
    compose = (Path(__file__).parents[1] / "docker-compose.yml").read_text()
    for setting in INGEST_SETTINGS:
        assert f'"-c", "{setting}"' in compose


async def _roundtrip(url: str, topic: str) -> bytes:
    """Publish one QoS 1 message to `topic` and return what the subscription receives."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    assert host is not None
    async with aiomqtt.Client(host, port or 1883) as client:
        await client.subscribe(topic, qos=1)
        await client.publish(topic, b"hello", qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            return message.payload
    raise AssertionError("no message")


async def test_mosquitto_delivers_a_message(tmp_path: Path) -> None:
    with local_mosquitto(tmp_path / "mq") as url:
        assert await _roundtrip(url, "em/v1/test") == b"hello"
    assert (tmp_path / "mq" / "mosquitto.db").exists()


async def test_mqtt_url_fixture_reaches_a_broker(mqtt_url: str) -> None:
    assert await _roundtrip(mqtt_url, f"em/v1/test/{secrets.token_hex(4)}") == b"hello"


def test_services_uses_configured_urls_without_starting_anything(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"database_url": "postgresql://db/x", "mqtt_url": "mqtt://broker:1883", "data_dir": tmp_path}
    )
    with services(settings) as urls:
        assert urls == ("postgresql://db/x", "mqtt://broker:1883")
    assert list(tmp_path.iterdir()) == []


async def _public_tables(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
    finally:
        await conn.close()


async def test_fresh_database_fixture_gives_a_distinct_empty_database(
    database_url: str, fresh_database_url: str
) -> None:
    assert database_url != fresh_database_url
    assert urlsplit(database_url).path.startswith("/emwatch_test_")
    # The session database is shared (the e2e service migrates it); a fresh one is empty.
    assert await _public_tables(fresh_database_url) == 0
