"""Write transactions in flight together: the later one writes its fixes while the one before commits,
but commits, and is reported durable, strictly after it (buffer = seq order); a lock wait that outlasts
the lock timeout ends in a rollback and a retry in order, never a hang."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import numpy as np
import pytest_asyncio
from prometheus_client import REGISTRY

from emwatch.feed.ledger import AlertLedger
from emwatch.model import AlertEvent, FixBatch, Observations
from emwatch.rules.engine import Evaluation
from emwatch.store.committer import LOCK_TIMEOUT_MS, Committer
from emwatch.store.db import connect_pool, migrate
from emwatch.store.minute_notes import minute_of
from emwatch.store.write_buffer import PendingWrite, WriteBuffer
from tests.store.test_fixes import T0, batch


@dataclass
class Rig:
    """A running committer over a real database, what it reported durable, and a connection to watch."""

    buffer: WriteBuffer
    committer: Committer
    durable: list[list[PendingWrite]]
    watch: asyncpg.Connection
    dsn: str


@pytest_asyncio.fixture
async def rig(fresh_database_url: str) -> AsyncIterator[Rig]:
    await migrate(fresh_database_url)
    watch = await asyncpg.connect(fresh_database_url)
    await watch.execute(
        "INSERT INTO jurisdictions (id, name, kind) VALUES ('j', 'J', 'district');"
        "INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('s', 'S', 'j'), ('s-other', 'O', 'j');"
        "INSERT INTO devices (id, kind, subject_id) VALUES ('d1', 'ankle', 's'), ('d2', 'ankle', 's')"
    )
    durable: list[list[PendingWrite]] = []
    buffer = WriteBuffer(max_writes=100, max_fixes=100_000)
    async with connect_pool(fresh_database_url) as pool:
        committer = Committer(pool, buffer, AlertLedger((), range(1_000, 2_000)), durable.append,
                              max_per_commit=1, writers=2)
        running = asyncio.create_task(committer.run())
        try:
            yield Rig(buffer, committer, durable, watch, fresh_database_url)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await watch.close()


def fixes(fix_batch: FixBatch, *alerts: AlertEvent) -> PendingWrite:
    empty = Observations.empty()
    return PendingWrite(Evaluation(fix_batch, [], [], empty, empty), alerts=list(alerts))


def opened(seq: int, zone: str) -> AlertEvent:
    return AlertEvent("alert", "zone_entry", "s", "j", "d1", zone, T0, 30.3, 120.1, "critical", seq=seq,
                      alert_id=100 + seq)


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if await done if inspect.isawaitable(done) else done:
            return
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def conflicts() -> float:
    return REGISTRY.get_sample_value("emwatch_commit_conflicts_total") or 0.0


async def backends(watch: asyncpg.Connection) -> list[tuple[str, str | None, str]]:
    """(state, wait event type, last statement) of the other sessions on this database."""
    rows = await watch.fetch(
        "SELECT state, wait_event_type, query FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND state <> 'idle'"
    )
    return [(r["state"], r["wait_event_type"], r["query"]) for r in rows]


async def hold_alert_events(dsn: str) -> asyncpg.Connection:
    """Another session's lock on alert_events: a transaction writing its alerts waits for it (readers do
    not)."""
    holder = await asyncpg.connect(dsn)
    await holder.execute("BEGIN; LOCK TABLE alert_events IN EXCLUSIVE MODE")
    return holder


async def first_committing_second_written(rig: Rig, *writes: PendingWrite) -> asyncpg.Connection:
    """Put the writes while alert_events is locked; return the lock's holder once the first transaction
    waits for it (writing its alerts) and the second, its fixes written, waits for its turn to commit."""
    holder = await hold_alert_events(rig.dsn)
    for w in writes:
        rig.buffer.put(w)

    async def in_place() -> bool:
        sessions = await backends(rig.watch)
        return any(w == "Lock" and q.startswith("INSERT INTO alert_events") for _, w, q in sessions) and any(
            s == "idle in transaction" and q.startswith('COPY "fixes"') for s, _, q in sessions
        )

    await until(in_place)
    return holder


async def test_a_later_transaction_writes_its_fixes_at_once_but_commits_only_after_the_one_before(
    rig: Rig,
) -> None:
    first = fixes(batch(["d1"], [T0], [1]), opened(1, "z1"))
    second = fixes(batch(["d2"], [T0], [1]), opened(2, "z2"))
    holder = await first_committing_second_written(rig, first, second)

    # the second has written its fixes but commits neither them nor seq 2 while seq 1 is not committed
    await asyncio.sleep(0.2)
    assert rig.durable == []
    assert await rig.watch.fetchval("SELECT count(*) FROM fixes") == 0
    assert await rig.watch.fetchval("SELECT count(*) FROM alert_events") == 0

    await holder.execute("ROLLBACK")
    await until(lambda: len(rig.durable) == 2)
    assert rig.durable == [[first], [second]]
    assert await rig.watch.fetchval("SELECT array_agg(seq ORDER BY seq) FROM alert_events") == [1, 2]
    assert await rig.watch.fetchval("SELECT count(*) FROM fixes") == 2
    await holder.close()


async def test_a_fix_redelivered_into_the_next_transaction_is_stored_once_in_order(rig: Rig) -> None:
    first = fixes(batch(["d1", "d2"], [T0, T0], [1, 1]), opened(1, "z1"))
    second = fixes(batch(["d2"], [T0], [1]), opened(2, "z2"))  # d2 at T0 again: a redelivery
    holder = await hold_alert_events(rig.dsn)
    rig.buffer.put(first)
    rig.buffer.put(second)
    # the first waits for the holder, writing its alerts; the second's COPY waits for the first's d2
    await until(lambda: _lock_waits(rig.watch, 2))
    await holder.execute("ROLLBACK")

    await until(lambda: len(rig.durable) == 2)
    assert rig.durable == [[first], [second]]
    assert (first.stored, second.stored) == (2, 0)
    assert await rig.watch.fetchval("SELECT count(*) FROM fixes") == 2
    assert await rig.watch.fetchval("SELECT array_agg(seq ORDER BY seq) FROM alert_events") == [1, 2]
    await holder.close()


async def _lock_waits(watch: asyncpg.Connection, n: int) -> bool:
    return sum(w == "Lock" for _, w, _ in await backends(watch)) == n


async def test_a_lock_wait_past_the_timeout_rolls_back_both_and_retries_them_in_order(rig: Rig) -> None:
    # Commit order is kept in Python, where PostgreSQL cannot see it: were a transaction ever to wait in
    # PostgreSQL for a later one, which waits in Python for it, only the lock timeout would end that.
    first = fixes(batch(["d1"], [T0], [1]), opened(1, "z1"))
    second = fixes(batch(["d2"], [T0], [1]), opened(2, "z2"))
    before = conflicts()
    holder = await first_committing_second_written(rig, first, second)
    await until(lambda: conflicts() > before, timeout=LOCK_TIMEOUT_MS / 1000 + 5)  # the first gave up
    await holder.execute("ROLLBACK")

    await until(lambda: len(rig.durable) == 2)
    assert rig.durable == [[first], [second]]
    assert await rig.watch.fetchval("SELECT count(*) FROM fixes") == 2
    assert await rig.watch.fetchval("SELECT array_agg(seq ORDER BY seq) FROM alert_events") == [1, 2]
    await holder.close()


async def test_when_the_oldest_transaction_loses_its_connection_the_later_one_waits_and_follows(
    rig: Rig,
) -> None:
    first = fixes(batch(["d1"], [T0], [1]), opened(1, "z1"))
    second = fixes(batch(["d2"], [T0], [1]), opened(2, "z2"))
    holder = await first_committing_second_written(rig, first, second)
    await rig.watch.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database() AND query LIKE 'INSERT INTO alert_events%'"
    )
    await until(lambda: not rig.committer.database_up)
    await holder.execute("ROLLBACK")

    await until(lambda: len(rig.durable) == 2)
    assert rig.durable == [[first], [second]] and rig.committer.database_up
    assert await rig.watch.fetchval("SELECT count(*) FROM fixes") == 2
    assert await rig.watch.fetchval("SELECT array_agg(seq ORDER BY seq) FROM alert_events") == [1, 2]
    await holder.close()


async def test_consecutive_writes_are_spread_over_transactions_in_flight_together(rig: Rig) -> None:
    writes = [fixes(batch(["d1"], [T0], [1]), opened(1, "z1"))]
    writes += [fixes(batch(["d2"], [ts], [1])) for ts in (T0, T0 + 1)]
    holder = await first_committing_second_written(rig, *writes)
    assert rig.buffer.untaken == 1 and len(rig.buffer) == 3  # two writers: the third waits for one
    await holder.execute("ROLLBACK")
    await until(lambda: len(rig.buffer) == 0)
    assert rig.durable == [[w] for w in writes] and [w.stored for w in writes] == [1, 1, 1]
    await holder.close()


def numbered(fix_batch: FixBatch, device_ids: list[str]) -> FixBatch:
    """The batch as the engine hands it over: its devices numbered by a registry's device list."""
    device = np.array([device_ids.index(d) for d in fix_batch.fixes.device_ids], dtype=np.int32)
    return dataclasses.replace(fix_batch, device=device, device_ids=device_ids)


async def test_the_minutes_a_rolled_back_transaction_noted_are_noted_again_when_it_is_retried(rig: Rig) -> None:
    # The committer remembers which minutes it noted in device_minutes, so as not to note them per fix;
    # what a rolled-back transaction noted is gone, and its retry must write it again.
    registry = ["d1", "d2"]
    first = fixes(numbered(batch(["d1"], [T0], [1]), registry), opened(1, "z1"))
    second = fixes(numbered(batch(["d2"], [T0], [1]), registry), opened(2, "z2"))
    before = conflicts()
    holder = await first_committing_second_written(rig, first, second)
    await until(lambda: conflicts() > before, timeout=LOCK_TIMEOUT_MS / 1000 + 5)  # both rolled back
    await holder.execute("ROLLBACK")

    await until(lambda: len(rig.durable) == 2)
    noted = await rig.watch.fetch("SELECT subject_id, device_id, minute FROM device_minutes ORDER BY 2")
    assert [tuple(r) for r in noted] == [("s", d, int(minute_of(np.array([T0]))[0])) for d in registry]
    await holder.close()
