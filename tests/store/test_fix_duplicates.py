"""How the committer's fix writes meet a fix stored already (a redelivery): without a savepoint the
transaction fails, and written again through the merge it stores only what is new."""

from __future__ import annotations

import asyncpg
import pytest

from emwatch.store.fixes import FixPayload, write_payload
from tests.store.test_fixes import T0, batch, with_devices


async def test_without_a_savepoint_a_redelivered_fix_fails_the_whole_transaction(
    subject_db: asyncpg.Connection,
) -> None:
    conn = await with_devices(subject_db)
    async with conn.transaction():
        await write_payload(conn, FixPayload([batch(["d1"], [T0], [1])]), duplicates="raise")
    with pytest.raises(asyncpg.UniqueViolationError):
        async with conn.transaction():
            await conn.execute("INSERT INTO dead_letters (topic, payload, reason) VALUES ('t', 'p', 'r')")
            await write_payload(conn, FixPayload([batch(["d2", "d1"], [T0, T0], [1, 1])]), duplicates="raise")
    assert await conn.fetchval("SELECT count(*) FROM fixes") == 1
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0  # rolled back with it


async def test_written_again_through_the_merge_only_the_new_fixes_are_stored(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    async with conn.transaction():
        await write_payload(conn, FixPayload([batch(["d1"], [T0], [1])]), duplicates="raise")
    async with conn.transaction():
        new = await write_payload(conn, FixPayload([batch(["d2", "d1"], [T0, T0], [1, 1])]),
                                  duplicates="merge_all")
    assert new == 1
    assert await conn.fetch("SELECT device_id, subject_id FROM fixes ORDER BY device_id") == [("d1", "s"), ("d2", "s")]
