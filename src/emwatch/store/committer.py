"""The commit stage: the write buffer (store/write_buffer.py) drained in seq order by pipelined write
transactions that outlast outages.

The evaluate stage has already published what a batch raised; what is left is to make it durable:
fixes, device events, dead letters, alerts, alert events and their notification outbox, in one
transaction per drain. Up to `writers` drains are in flight at once, each on its own connection: each
writes its fixes once the drain before it has written its own (one COPY at a time), its alerts only
once that drain has committed, and then commits itself, so drains commit, and are reported durable
(PUBACK), in buffer (= seq) order.
While PostgreSQL is away the committer retries with backoff and the buffer fills; a full buffer blocks
the evaluate stage, which stops reading from the broker (back-pressure; nothing dropped or acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter, Histogram

from emwatch import metrics
from emwatch.feed.ledger import AlertLedger
from emwatch.store import fixes, writer
from emwatch.store.db import CONNECTION_ERRORS, raise_if_cancelling
from emwatch.store.minute_notes import MinuteNotes
from emwatch.store.write_buffer import PendingWrite, WriteBuffer

log = logging.getLogger(__name__)
# What a lost or refused connection looks like through asyncpg (a query error is not among them).
DATABASE_DOWN = CONNECTION_ERRORS
# A drain waits in PostgreSQL on a row of a later drain (the same fix redelivered into both) while the
# later one waits, in Python, for the earlier to commit: PostgreSQL cannot see that cycle. The lock wait
# times out instead, both roll back, and the earlier retries alone. A real deadlock is reported as such.
LOCK_TIMEOUT_MS = 2_000
CONFLICTS = (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)

COMMIT_CONFLICTS = Counter(
    "emwatch_commit_conflicts_total", "Write transactions rolled back on a lock timeout or deadlock, retried"
)
# Its sum over time is the writers' busy share (up to Settings.commit_writers): near it, they set the pace.
COMMIT_SECONDS = Histogram(
    "emwatch_commit_seconds",
    "One successful write transaction (fixes, events, alerts, commit), less its wait for the one before.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
# Where that time goes: encode (the COPY payload), queue (waiting for the transaction before to write its
# fixes and rows), fixes (begin, COPY), rows (device events, dead letters), turn (waiting for the one
# before to commit), alerts (+ renumbers, outbox), commit. The two waits are not in COMMIT_SECONDS.
COMMIT_PHASE_SECONDS = Counter("emwatch_commit_phase_seconds", "Write transaction time by phase", ["phase"])
_PHASES = {p: COMMIT_PHASE_SECONDS.labels(p)
           for p in ("encode", "queue", "fixes", "rows", "turn", "alerts", "commit")}


class _PredecessorFailed(Exception):
    """The transaction before this one failed: this one rolls back, to be written again after it."""


class _Turn:
    """A transaction's progress, as the one after it waits for it: its fixes and rows written, then
    committed (ok) or failed."""

    __slots__ = ("_settled", "_written", "ok")

    def __init__(self) -> None:
        self._written, self._settled, self.ok = asyncio.Event(), asyncio.Event(), False

    def wrote(self) -> None:
        self._written.set()

    def settle(self, ok: bool) -> None:
        self.ok = ok
        self._written.set()
        self._settled.set()

    async def written(self) -> None:
        await self._written.wait()
        if self._settled.is_set() and not self.ok:
            raise _PredecessorFailed

    async def committed(self) -> None:
        await self._settled.wait()
        if not self.ok:
            raise _PredecessorFailed


@dataclass(slots=True)
class _Drain:
    """Some consecutive writes, being committed as one transaction."""

    items: list[PendingWrite]
    turn: _Turn
    task: asyncio.Task[None]


class Committer:
    """Drains a WriteBuffer into PostgreSQL; `on_durable` runs after each commit, in buffer order
    (PUBACKs, feed trim)."""

    def __init__(self, pool: asyncpg.Pool, buffer: WriteBuffer, ledger: AlertLedger,
                 on_durable: Callable[[list[PendingWrite]], None], max_per_commit: int,
                 writers: int = 2, lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> None:
        self.pool, self.buffer, self.ledger = pool, buffer, ledger
        self.on_durable = on_durable
        self.max_per_commit = max_per_commit
        self.writers, self.lock_timeout_ms = writers, lock_timeout_ms
        self.database_up = True
        self.busy = False
        self._idle: list[asyncpg.Connection] = []  # held between transactions (lock_timeout set once)
        self.minutes = MinuteNotes()  # what device_minutes holds of the fixes written

    async def run(self) -> None:
        """Commit forever, in buffer order."""
        flight: deque[_Drain] = deque()
        try:
            while True:
                raise_if_cancelling()
                while len(flight) < self.writers and self.buffer.untaken:
                    flight.append(self._start(await self.buffer.take(self.max_per_commit),
                                              flight[-1].turn if flight else None))
                self.busy = bool(flight)
                if not flight:
                    await self.buffer.wait_untaken()
                    continue
                head = flight[0]
                if not head.task.done():
                    await self._head_or_more(head.task, room=len(flight) < self.writers)
                    continue
                flight.popleft()
                if head.task.exception() is not None:
                    await self._recover(head, flight)
                self.buffer.done(len(head.items))
                self.on_durable(head.items)
        finally:
            for d in flight:
                d.task.cancel()
            await asyncio.gather(*(d.task for d in flight), return_exceptions=True)
            self.busy = False
            while self._idle:
                await self.pool.release(self._idle.pop())

    def _start(self, items: list[PendingWrite], after: _Turn | None) -> _Drain:
        turn = _Turn()
        return _Drain(items, turn, asyncio.create_task(self._attempt(items, after, turn), name="commit"))

    async def _head_or_more(self, head: asyncio.Task[None], room: bool) -> None:
        """Until the oldest transaction ends, or (with a writer free) more writes arrive."""
        more = asyncio.ensure_future(self.buffer.wait_untaken()) if room else None
        try:
            await asyncio.wait([head] if more is None else [head, more], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if more is not None:
                more.cancel()

    async def _recover(self, failed: _Drain, rest: deque[_Drain]) -> None:
        """The oldest transaction failed: the later ones roll back (their turn failed); once they did, it
        is written again alone, as long as it takes, then the later ones start again behind it."""
        await asyncio.gather(*(d.task for d in rest), return_exceptions=True)
        error = failed.task.exception()
        assert error is not None
        backoff, merge = 0.2, False
        while True:
            if isinstance(error, asyncpg.UniqueViolationError) and not merge:
                merge = True  # a fix stored already (redelivered): this time all through the merge
            elif not isinstance(error, (*DATABASE_DOWN, *CONFLICTS)):
                raise error
            elif isinstance(error, DATABASE_DOWN):
                self.database_up = False
                metrics.COMMIT_RETRIES.inc()
                log.warning("database unavailable (%s); %d write(s) buffered (%d fixes); retrying in %.1f s",
                            error, len(self.buffer), self.buffer.pending_fixes, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                COMMIT_CONFLICTS.inc()
                log.info("write transaction rolled back (%s: %s); writing it again alone",
                         type(error).__name__, error)
            raise_if_cancelling()
            try:
                await self._attempt(failed.items, None, _Turn(), merge)
                break
            except (*DATABASE_DOWN, *CONFLICTS, asyncpg.UniqueViolationError) as exc:
                raise_if_cancelling()
                error = exc
        later = [d.items for d in rest]
        rest.clear()
        for items in later:
            rest.append(self._start(items, rest[-1].turn if rest else None))

    async def _attempt(self, items: list[PendingWrite], after: _Turn | None, turn: _Turn,
                       merge: bool = False) -> None:
        """One transaction of `items`, committed after `after`'s; settles `turn` either way. Fixes go
        straight into their table (a redelivered one fails the transaction) or, with `merge`, through
        the merge that skips those stored already."""
        try:
            conn = await self._connection()
            try:
                waited = await _commit(conn, items, after, turn, merge, self.minutes)
            except BaseException as exc:
                self.minutes.clear()  # it may have noted pairs it did not write: the retry notes them
                if isinstance(exc, (*DATABASE_DOWN, asyncio.CancelledError)) or not _alive(conn):
                    await self._discard(conn)  # lost, or cut mid-statement: not fit to reuse
                else:
                    self._idle.append(conn)  # rolled back: fine for the next transaction
                raise
            turn.settle(True)
            COMMIT_SECONDS.observe(waited)
            self._idle.append(conn)
        except BaseException:
            turn.settle(False)
            raise
        if not self.database_up:
            log.warning("database back: %d buffered write(s) committed", len(items))
        self.database_up = True
        if wanted := self.ledger.ids_wanted:
            await self._reserve_ids(wanted)

    async def _connection(self) -> asyncpg.Connection:
        """A held connection still open, else a new one from the pool, its lock_timeout set."""
        while self._idle:
            conn = self._idle.pop()
            if _alive(conn):
                return conn
            await self._discard(conn)
        conn = await self.pool.acquire()
        try:
            # (JIT is off for the whole pool: store/db.py)
            await conn.execute(f"SET lock_timeout = {int(self.lock_timeout_ms)}")
        except BaseException:
            await self.pool.release(conn)
            raise
        return conn

    async def _discard(self, conn: asyncpg.Connection) -> None:
        try:
            conn.terminate()
        except asyncpg.InterfaceError:  # the pool took it back already, when the server closed it
            return
        await self.pool.release(conn)

    async def _reserve_ids(self, wanted: int) -> None:
        """Refill the ledger's alert ids (the reply may come after the ledger was refilled by another)."""
        try:
            async with self.pool.acquire() as conn:
                if self.ledger.ids_wanted:
                    self.ledger.reserve(await writer.reserve_alert_ids(conn, wanted))
        except DATABASE_DOWN as exc:  # committed all the same; a later commit asks again
            raise_if_cancelling()
            log.warning("alert ids not reserved (%s)", exc)


def _alive(conn: asyncpg.Connection) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # released to the pool when the server closed it
        return False


async def _commit(conn: asyncpg.Connection, items: list[PendingWrite], after: _Turn | None, turn: _Turn,
                  merge: bool, minutes: MinuteNotes) -> float:
    """Everything of several writes in one transaction (one fixes merge for all of them): fixes and rows
    once `after` wrote its own, alerts and COMMIT once it committed. Returns its seconds, less those
    waits."""
    evaluations = [item.evaluation for item in items if item.evaluation is not None]
    marks = [time.perf_counter()]

    def lap(phase: str) -> None:
        marks.append(time.perf_counter())
        _PHASES[phase].inc(marks[-1] - marks[-2])

    payload = fixes.FixPayload([e.batch for e in evaluations if len(e.batch)], minutes)
    lap("encode")
    if after is not None:
        # One COPY at a time: then no drain waits inside PostgreSQL on a row of a later one, so the
        # commit order below cannot deadlock against them. Two COPYs at once were measured no faster
        # (packed batches at 150k-200k fixes/s, 2026-11-23: benchmarks/RESULTS.md).
        await after.written()
    lap("queue")
    async with conn.transaction():
        stored = await fixes.write_payload(conn, payload, duplicates="merge_all" if merge else "raise")
        lap("fixes")
        await writer.write_device_events(conn, evaluations)
        await writer.write_dead_letters(conn, [d for e in evaluations for d in e.dead])
        turn.wrote()
        lap("rows")
        if after is not None:
            # Its alerts may be this one's to clear or revise, and a feed reader must never see seq N+1
            # committed before N: this transaction writes alerts and commits only after it.
            await after.committed()
        lap("turn")
        # Alerts (revisions too) and renumberings keep buffer (= seq) order: a renumbered seq follows the
        # alerts before it, and a revision the opening it corrects.
        await writer.write_sequenced_alerts(conn, [ev for item in items for ev in item.alerts])
        await writer.renumber_events(conn, [item.renumber for item in items if item.renumber is not None])
        lap("alerts")
    lap("commit")
    # Per-write counts are not known after one merge; the total is charged to the first batch.
    for item in items:
        item.stored = stored if evaluations and item.evaluation is evaluations[0] else 0
    return marks[-1] - marks[0] - (marks[2] - marks[1]) - (marks[5] - marks[4])
