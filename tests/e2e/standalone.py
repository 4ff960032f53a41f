"""Helpers for tests that run their own Pipeline (not the shared service): seeding and waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg

from tests.e2e.conftest import WAIT_S

ONE_SUBJECT = (
    "INSERT INTO jurisdictions (id, name, kind) VALUES ('j', 'J', 'district');"
    "INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('s', 'S', 'j');"
    "INSERT INTO devices (id, kind, subject_id) VALUES ('d', 'ankle', 's');"
)


async def seed_one_subject(dsn: str, extra_sql: str = "") -> None:
    """Jurisdiction 'j', subject 's' and its ankle bracelet 'd' (plus any extra SQL)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(ONE_SUBJECT + extra_sql)
    finally:
        await conn.close()


async def wait_for(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll until `condition()` holds (the pipeline exposes counters, not events)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)
