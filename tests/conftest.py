"""Shared fixtures: a real PostgreSQL and MQTT broker, from the environment or started locally.

Set EMWATCH_TEST_DATABASE_URL / EMWATCH_TEST_MQTT_URL (or EMWATCH_DATABASE_URL / EMWATCH_MQTT_URL) to
use running servers; otherwise private ones are started on free ports under pytest's temp directory.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from emwatch.embedded import local_mosquitto, local_postgres

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
    """URL of an MQTT broker, `mqtt://host:port`."""
    if url := _env("EMWATCH_TEST_MQTT_URL", "EMWATCH_MQTT_URL"):
        yield url
        return
    # In memory: sessions of every test's consumer queue all later messages, and a disk store
    # rewritten on every 100 changes would throttle the broker (the demo and production persist).
    with local_mosquitto(tmp_path_factory.mktemp("mosquitto"), persist=False) as url:
        yield url
