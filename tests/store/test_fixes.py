"""Fixes are stored exactly once, with the same values whichever path (direct COPY or merge) takes them."""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np
import pytest

from emwatch.model import NO_BATT, NO_SEQ, FixBatch, FixColumns
from emwatch.store.fixes import write_fixes

SUBJECTS = ["s-other", "s"]  # the registry's dense subject ids: index 1 is 's'
T0 = 1_700_000_000_123  # epoch ms


def batch(
    devices: list[str], ts: list[int], subject: list[int], *, subject_ids: list[str] | None = SUBJECTS,
    acc: float = 8.5, src: int = 1, batt: int = 77, seq: int = 5,
) -> FixBatch:
    """A batch of fixes at distinct positions; `subject` indexes `subject_ids` (-1: none known)."""
    n = len(devices)
    cols = FixColumns(
        devices, np.array(ts, dtype=np.int64), 30.0 + np.arange(n) * 1e-3, 120.0 + np.arange(n) * 1e-3,
        np.full(n, acc, dtype=np.float32), np.full(n, src, dtype=np.int8),
        np.full(n, batt, dtype=np.int16), np.full(n, seq, dtype=np.int64),
    )
    return FixBatch(
        cols, np.arange(n, dtype=np.int32), np.array(subject, dtype=np.int32),
        np.arange(1, n + 1, dtype=np.uint64) << np.uint64(60), np.ones(n, dtype=bool),
        np.array([i % 2 == 1 for i in range(n)]), subject_ids=subject_ids or (),
    )


async def stored(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT device_id, (extract(epoch FROM ts) * 1000)::bigint AS ts, lat, lon, acc, src, batt, seq, h3,"
        " subject_id, suspect FROM fixes ORDER BY device_id, ts"
    )
    return [dict(r) for r in rows]


async def with_devices(conn: asyncpg.Connection) -> asyncpg.Connection:
    await conn.execute(
        "INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('s-other', 'O', 'j');"
        "INSERT INTO devices (id, kind, subject_id) VALUES ('d1', 'ankle', 's'), ('d2', 'ankle', 's'),"
        " ('d-none', 'phone', NULL)"
    )
    return conn


async def write(conn: asyncpg.Connection, *batches: FixBatch) -> int:
    async with conn.transaction():
        return await write_fixes(conn, list(batches))


async def test_fixes_keep_their_values_and_subject_from_the_registry(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    assert await write(conn, batch(["d1", "d2"], [T0, T0 + 1], [1, 0])) == 2
    rows = await stored(conn)
    assert rows[0] == {
        "device_id": "d1", "ts": T0, "lat": 30.0, "lon": 120.0, "acc": 8.5, "src": "wifi", "batt": 77,
        "seq": 5, "h3": 1 << 60, "subject_id": "s", "suspect": False,
    }
    # the registry's subject, as it judged the fix (here deliberately not the devices table's)
    assert rows[1]["subject_id"] == "s-other" and rows[1]["suspect"] is True


async def test_absent_values_are_stored_as_null(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    await write(conn, batch(["d1"], [T0], [1], acc=float("nan"), batt=NO_BATT, seq=NO_SEQ, src=2))
    (row,) = await stored(conn)
    assert (row["acc"], row["batt"], row["seq"], row["src"]) == (None, None, None, "lbs")


async def test_both_paths_store_identical_rows(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    await write(conn, batch(["d1", "d2"], [T0, T0], [1, 1]))  # direct COPY
    direct = await stored(conn)
    await conn.execute("DELETE FROM fixes")
    await write(conn, batch(["d1", "d2"], [T0, T0], [1, 1], subject_ids=None))  # merge, subject by probe
    assert await stored(conn) == direct


async def test_a_redelivered_batch_is_stored_once(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    first = batch(["d1", "d2"], [T0, T0], [1, 1])
    assert await write(conn, first) == 2
    before = await stored(conn)
    assert await write(conn, first) == 0  # the COPY fails on the duplicate; the merge skips it
    assert await stored(conn) == before


async def test_a_partly_redelivered_transaction_stores_only_the_new_fixes(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    await write(conn, batch(["d1"], [T0], [1]))
    async with conn.transaction():
        new = await write_fixes(conn, [batch(["d1", "d2"], [T0, T0], [1, 1]), batch(["d1"], [T0 + 10], [1])])
        # the transaction goes on after the fallback: the failed COPY was undone to its savepoint only
        assert await conn.fetchval("SELECT count(*) FROM fixes") == 3
    assert new == 2
    assert [(r["device_id"], r["ts"]) for r in await stored(conn)] == [("d1", T0), ("d1", T0 + 10), ("d2", T0)]


async def test_the_same_fix_twice_in_one_transaction_is_stored_once(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    assert await write(conn, batch(["d1"], [T0], [1]), batch(["d1"], [T0], [1])) == 1
    assert len(await stored(conn)) == 1


async def test_fixes_without_a_registry_subject_get_their_device_s_from_the_database(
    subject_db: asyncpg.Connection,
) -> None:
    conn = await with_devices(subject_db)
    # d2's subject not active in the registry (-1), d-none has none at all; d1 is resolved in the service
    assert await write(conn, batch(["d1", "d2", "d-none"], [T0, T0, T0], [1, -1, -1])) == 3
    assert {r["device_id"]: r["subject_id"] for r in await stored(conn)} == {"d1": "s", "d2": "s", "d-none": None}


async def test_a_batch_without_registry_ids_is_looked_up_in_the_database(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    assert await write(conn, batch(["d1", "d-none"], [T0, T0], [0, 0], subject_ids=None)) == 2
    assert {r["device_id"]: r["subject_id"] for r in await stored(conn)} == {"d1": "s", "d-none": None}


async def test_batches_judged_by_different_registries_keep_each_one_s_subjects(
    subject_db: asyncpg.Connection,
) -> None:
    conn = await with_devices(subject_db)
    reloaded = ["s", "s-other"]  # the registry reloaded between two buffered batches: indices moved
    assert await write(conn, batch(["d1"], [T0], [1]), batch(["d2"], [T0], [0], subject_ids=reloaded)) == 2
    assert {r["device_id"]: r["subject_id"] for r in await stored(conn)} == {"d1": "s", "d2": "s"}


async def test_writing_outside_a_transaction_is_refused(subject_db: asyncpg.Connection) -> None:
    conn = await with_devices(subject_db)
    with pytest.raises(RuntimeError):
        await write_fixes(conn, [batch(["d1"], [T0], [1])])
    assert await stored(conn) == []


async def test_every_device_id_column_compares_bytes_so_the_fixes_key_needs_no_locale(
    subject_db: asyncpg.Connection,
) -> None:
    columns = await subject_db.fetch(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND (column_name = 'device_id' OR (table_name, column_name) = ('devices', 'id'))"
        " ORDER BY 1"
    )
    assert [r["table_name"] for r in columns] == ["alerts", "device_events", "device_minutes", "devices", "fixes"]
    assert {r["collation_name"] for r in columns} == {"C"}
    # byte order, whatever the database's locale: upper case before lower case, 'é' after 'z'
    conn = await with_devices(subject_db)
    await conn.execute("INSERT INTO devices (id, kind, subject_id) VALUES ('a', 'ankle', 's'), ('Z', 'ankle', 's'),"
                       " ('é', 'ankle', 's'), ('z', 'ankle', 's')")
    assert await write(conn, batch(["a", "Z", "é", "z"], [T0] * 4, [-1] * 4, subject_ids=None)) == 4
    rows = await stored(conn)
    assert [r["device_id"] for r in rows] == ["Z", "a", "z", "é"]
    assert {r["subject_id"] for r in rows} == {"s"}  # the merge path found each device's subject


async def test_device_ids_come_from_the_registry_column_when_the_batch_carries_its_registry(
    subject_db: asyncpg.Connection,
) -> None:
    conn = await with_devices(subject_db)
    registry_devices = ["d-none", "d1", "d2"]  # dense device d is registry_devices[d]
    one = batch(["d2", "d1"], [T0, T0], [1, 1])
    one = FixBatch(one.fixes, np.array([2, 1], dtype=np.int32), one.subject, one.cell, one.fresh, one.suspect,
                   subject_ids=SUBJECTS, device_ids=registry_devices)
    other = batch(["d1"], [T0 + 5], [1])  # a batch of another registry (none known): its own id strings
    assert await write(conn, one, other) == 3
    assert [(r["device_id"], r["ts"]) for r in await stored(conn)] == [("d1", T0), ("d1", T0 + 5), ("d2", T0)]
    assert await write(conn, one) == 0  # the same fixes again: the same keys
