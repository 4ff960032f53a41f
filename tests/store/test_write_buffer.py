"""The write buffer between evaluation and the committer holds its bounds, keeps order, and hands each
write to one transaction."""

from __future__ import annotations

import asyncio

import pytest

from emwatch.store.write_buffer import PendingWrite, WriteBuffer


async def test_a_full_buffer_blocks_the_writer_until_the_committer_drains() -> None:
    buffer = WriteBuffer(max_writes=2, max_fixes=1_000)
    for _ in range(2):
        await buffer.wait_for_room(0)
        buffer.put(PendingWrite())
    waiting = asyncio.create_task(buffer.wait_for_room(0))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    taken = await buffer.take(limit=10)
    assert len(taken) == 2 and len(buffer) == 2  # taken writes count until they are durable
    buffer.done(1)
    await asyncio.wait_for(waiting, 1)
    assert len(buffer) == 1


async def test_one_write_always_fits_an_empty_buffer_however_big() -> None:
    buffer = WriteBuffer(max_writes=1, max_fixes=1)
    await asyncio.wait_for(buffer.wait_for_room(10_000), 1)


@pytest.mark.parametrize("limit", [1, 3])
async def test_take_returns_the_oldest_writes_in_order(limit: int) -> None:
    buffer = WriteBuffer(max_writes=10, max_fixes=10)
    writes = [PendingWrite(renumber=(-i, i)) for i in range(1, 4)]
    for w in writes:
        buffer.put(w)
    assert await buffer.take(limit) == writes[:limit]


async def test_each_write_is_taken_once_in_order_and_counted_until_done() -> None:
    buffer = WriteBuffer(max_writes=10, max_fixes=10)
    writes = [PendingWrite(renumber=(-i, i)) for i in range(1, 5)]
    for w in writes:
        buffer.put(w)
    assert await buffer.take(2) == writes[:2]
    assert await buffer.take(5) == writes[2:]  # the next transaction's: those not taken yet
    assert buffer.untaken == 0 and len(buffer) == 4
    waiting = asyncio.create_task(buffer.take(1))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # nothing untaken: waits for the next write
    buffer.done(2)
    assert len(buffer) == 2 and buffer.untaken == 0
    later = PendingWrite(renumber=(-9, 9))
    buffer.put(later)
    assert await asyncio.wait_for(waiting, 1) == [later]
