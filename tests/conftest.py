"""Shared fixtures: a real PostgreSQL and MQTT broker, from the environment or started locally.

Set EMWATCH_TEST_DATABASE_URL (or EMWATCH_DATABASE_URL) to use a running PostgreSQL (each session gets
fresh databases there); otherwise a private one is started on a free port under pytest's temp directory.
The MQTT broker is private to the session whenever Mosquitto is installed (see `mqtt_url`);
EMWATCH_TEST_MQTT_URL / EMWATCH_MQTT_URL name one for machines without it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from emwatch.embedded import _mosquitto_binary, local_mosquitto, local_postgres

DatabaseFactory = Callable[[], Awaitable[str]]


def _env(*names: str) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def with_database(dsn: str, name: str) -> str:
    """The same DSN pointing at database `name`."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a server where the tests may create and drop databases."""
    if url := _env("EMWATCH_TEST_DATABASE_URL", "EMWATCH_DATABASE_URL"):
        yield url
        return
    with local_postgres(tmp_path_factory.mktemp("postgres"), fast=True) as url:
        yield url


@pytest.fixture(scope="session")
async def database_factory(postgres_admin_url: str) -> AsyncIterator[DatabaseFactory]:
    """`await database_factory()` creates an empty database and returns its DSN; all dropped at the end."""
    created: list[str] = []

    async def create() -> str:
        name = f"emwatch_test_{secrets.token_hex(6)}"
        admin = await asyncpg.connect(postgres_admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        created.append(name)
        return with_database(postgres_admin_url, name)

    yield create
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(database_factory: DatabaseFactory) -> str:
    """DSN of an empty database shared by the whole session."""
    return await database_factory()


@pytest.fixture
async def fresh_database_url(database_factory: DatabaseFactory) -> str:
    """DSN of an empty database for this test alone."""
    return await database_factory()


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an MQTT broker private to this session, `mqtt://host:port`.

    Private whenever Mosquitto is installed, even if EMWATCH_TEST_MQTT_URL names a running broker (that
    is for machines without it). Every service a test starts subscribes to all device topics: on a broker
    others use, their traffic reached our services and ours theirs, and a stock mosquitto.conf (20
    messages in flight, 1000 queued per client, while the service acknowledges only after commit)
    dropped a test's own fixes behind someone else's burst: waits for them timed out.
    """
    if _mosquitto_binary() is None and (url := _env("EMWATCH_TEST_MQTT_URL", "EMWATCH_MQTT_URL")):
        yield url
        return
    # In memory: sessions of every test's consumer queue all later messages, and a disk store
    # rewritten on every 100 changes would throttle the broker (the demo and production persist).
    with local_mosquitto(tmp_path_factory.mktemp("mosquitto"), persist=False) as url:
        yield url
