"""The service notes in device_minutes only the (subject, device) pairs whose minute is new to it, and
device_minutes still always equals what the fixes table says: each pair's first and newest minute."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest_asyncio

from emwatch.model import FixBatch, FixColumns
from emwatch.store.fixes import FixPayload, write_payload
from emwatch.store.minute_notes import MinuteNotes

T0 = 1_700_000_040_000  # a minute's start
MINUTE = 60_000


def registry(n_devices: int, n_subjects: int) -> tuple[list[str], list[str]]:
    return [f"d{i:03}" for i in range(n_devices)], [f"s{i:03}" for i in range(n_subjects)]


def batch(ids: tuple[list[str], list[str]], device: list[int], subject: list[int], ts: list[int]) -> FixBatch:
    """Fixes numbered by a registry (device_ids, subject_ids); subject -1: none known."""
    device_ids, subject_ids = ids
    n = len(device)
    cols = FixColumns(
        [device_ids[d] for d in device], np.array(ts, np.int64), np.full(n, 30.0), np.full(n, 120.0),
        np.full(n, 5.0, np.float32), np.zeros(n, np.int8), np.full(n, -1, np.int16), np.zeros(n, np.int64),
    )
    return FixBatch(cols, np.array(device, np.int32), np.array(subject, np.int32), np.ones(n, np.uint64),
                    np.ones(n, bool), np.zeros(n, bool), subject_ids=subject_ids, device_ids=device_ids)


def noted(notes: MinuteNotes, b: FixBatch) -> set[tuple[str | None, str, int, int]]:
    n = notes.take([b])
    return set(zip(n.subject_ids, n.device_ids, n.first.tolist(), n.last.tolist(), strict=True))


def test_a_device_is_noted_once_per_new_minute_not_once_per_fix() -> None:
    ids = registry(2, 2)
    notes = MinuteNotes()
    m = (T0 - 946_684_800_000) // MINUTE
    assert noted(notes, batch(ids, [0, 1, 0], [0, 1, 0], [T0, T0 + 1, T0 + 10_000])) == {
        ("s000", "d000", m, m), ("s001", "d001", m, m)
    }
    assert noted(notes, batch(ids, [0, 1], [0, 1], [T0 + 20_000, T0 + 50_000])) == set()
    assert noted(notes, batch(ids, [0, 1], [0, 1], [T0 + MINUTE, T0 + 59_000])) == {("s000", "d000", m + 1, m + 1)}
    assert noted(notes, batch(ids, [0], [0], [T0 - MINUTE])) == {("s000", "d000", m - 1, m - 1)}  # late
    assert noted(notes, batch(ids, [0], [0], [T0 - 30_000])) == set()  # within what it noted
    notes.clear()  # a transaction failed: everything is noted again
    assert noted(notes, batch(ids, [0], [0], [T0])) == {("s000", "d000", m, m)}


def test_a_new_subject_is_noted_and_a_late_fix_of_the_earlier_one_too() -> None:
    ids = registry(1, 2)
    notes = MinuteNotes()
    m = (T0 - 946_684_800_000) // MINUTE
    noted(notes, batch(ids, [0], [0], [T0]))
    assert noted(notes, batch(ids, [0], [1], [T0 + MINUTE])) == {("s001", "d000", m + 1, m + 1)}
    assert noted(notes, batch(ids, [0], [0], [T0 + 500])) == {("s000", "d000", m, m)}  # late, of s000
    assert noted(notes, batch(ids, [0], [1], [T0 + MINUTE + 2_000])) == set()  # it stays with s001
    assert noted(notes, batch(ids, [0], [-1], [T0 + MINUTE + 3_000])) == {(None, "d000", m + 1, m + 1)}


def test_a_new_registry_numbering_keeps_the_notes_by_id() -> None:
    old, new = registry(3, 2), (["d000", "d0005", "d001", "d002"], ["s000", "s0005", "s001"])
    notes = MinuteNotes()
    noted(notes, batch(old, [0, 1, 2], [0, 1, -1], [T0, T0, T0]))
    # same devices under their new numbers: nothing new; the device the new registry added: noted
    assert noted(notes, batch(new, [0, 2, 3, 1], [0, 2, -1, 1], [T0 + 1] * 4)) == {
        ("s0005", "d0005", *(2 * [(T0 - 946_684_800_000) // MINUTE]))
    }


@pytest_asyncio.fixture
async def conn(subject_db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    device_ids, subject_ids = registry(40, 8)
    await subject_db.executemany("INSERT INTO subjects (id, name, jurisdiction_id) VALUES ($1, 'x', 'j')",
                                 [(s,) for s in subject_ids])
    await subject_db.executemany("INSERT INTO devices (id, kind, subject_id) VALUES ($1, 'ankle', $2)",
                                 [(d, subject_ids[i % 8] if i % 5 else None) for i, d in enumerate(device_ids)])
    yield subject_db


async def truth(conn: asyncpg.Connection) -> list[tuple[str, str, int, int]]:
    rows = await conn.fetch("SELECT coalesce(subject_id, ''), device_id, min(minute), max(minute) FROM fixes"
                            " GROUP BY 1, 2 ORDER BY 1, 2")
    return [tuple(r) for r in rows]


async def test_device_minutes_always_equals_the_fixes_through_reassignments_rollbacks_and_renumbering(
    conn: asyncpg.Connection,
) -> None:
    rng = np.random.default_rng(7)
    ids = registry(40, 8)
    notes = MinuteNotes()
    clock = T0
    for step in range(60):
        if step % 20 == 19:  # a registry reload: new lists, same ids
            ids = (list(ids[0]), list(ids[1]))
        n = int(rng.integers(1, 80))
        device = rng.integers(0, 40, n)
        subject = np.where(rng.random(n) < 0.1, -1, (device + (rng.random(n) < 0.1)) % 8)  # some reassigned
        late = rng.random(n) < 0.15
        ts = clock + rng.integers(0, 20_000, n) - np.where(late, rng.integers(0, 10 * MINUTE, n), 0)
        clock += 15_000
        payload = FixPayload([batch(ids, device.tolist(), subject.tolist(), ts.tolist())], notes)
        if step % 13 == 12:  # this transaction rolls back; the committer forgets its notes and retries
            tx = conn.transaction()
            await tx.start()
            await write_payload(conn, payload, duplicates="merge_all")
            await tx.rollback()
            notes.clear()
            payload = FixPayload([batch(ids, device.tolist(), subject.tolist(), ts.tolist())], notes)
        async with conn.transaction():
            await write_payload(conn, payload, duplicates="merge_all")
        got = await conn.fetch("SELECT subject_id, device_id, first_minute, minute FROM device_minutes"
                               " ORDER BY 1, 2")
        assert [tuple(r) for r in got] == await truth(conn), f"step {step}"
