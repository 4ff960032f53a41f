"""The commit stage: a bounded write buffer, drained in seq order by one committer that outlasts outages.

The evaluate stage has already published what a batch raised; what is left is to make it durable:
fixes, device events, dead letters, alerts, alert events and their notification outbox, in one
transaction per drain, in the order the events were given their seqs. While PostgreSQL is away the
committer retries with backoff and the buffer fills; a full buffer blocks the evaluate stage, which
stops reading from the broker (back-pressure; nothing is dropped, nothing is acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from emwatch import metrics
from emwatch.feed.ledger import AlertLedger
from emwatch.model import AlertEvent
from emwatch.rules.engine import Evaluation
from emwatch.store import writer
from emwatch.store.db import CONNECTION_ERRORS

log = logging.getLogger(__name__)
# What a lost or refused connection looks like through asyncpg (a query error is not among them).
DATABASE_DOWN = CONNECTION_ERRORS
BUFFER_FIXES = Gauge("emwatch_commit_buffer_fixes", "Fixes evaluated and published, not yet committed.")
BUFFER_FULL = Counter("emwatch_commit_buffer_full_total", "Times evaluation waited for the write buffer.")
# Its sum over time is the committer's busy share: near 1, the one writer sets the pipeline's pace.
COMMIT_SECONDS = Histogram(
    "emwatch_commit_seconds", "One successful write transaction (fixes, events, alerts, commit).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def raise_if_cancelling() -> None:
    """Stop a loop whose cancellation a library swallowed (a cancel racing a database or broker call
    can surface as a caught connection error): the task is still marked, so shutdown must not hang."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(slots=True)
class PendingWrite:
    """What one evaluated batch, clock tick or lifecycle action leaves to be made durable."""

    evaluation: Evaluation | None = None
    alerts: list[AlertEvent] = field(default_factory=list)  # seq and alert id assigned
    renumber: tuple[int, int] | None = None  # a lifecycle event's (provisional seq, final seq)
    receipts: list[tuple[int, int]] = field(default_factory=list)  # (mid, qos) to PUBACK once durable
    connection: int = 0  # the broker connection the receipts belong to
    stored: int = 0  # fixes newly stored (set by the committer)

    @property
    def fixes(self) -> int:
        return len(self.evaluation.batch) if self.evaluation is not None else 0

    @property
    def last_seq(self) -> int:
        seqs = [ev.seq for ev in self.alerts] + ([self.renumber[1]] if self.renumber else [])
        return max(seqs, default=0)


class WriteBuffer:
    """Writes waiting for the committer, bounded by count and by fixes."""

    def __init__(self, max_writes: int, max_fixes: int) -> None:
        self._items: deque[PendingWrite] = deque()
        self._fixes = 0
        self._max_writes, self._max_fixes = max_writes, max_fixes
        self._filled = asyncio.Event()  # set when something was put
        self._drained = asyncio.Event()  # set when something was committed

    def __len__(self) -> int:
        return len(self._items)

    @property
    def pending_fixes(self) -> int:
        return self._fixes

    def _has_room(self, fixes: int) -> bool:
        # One write is always admitted into an empty buffer, however big: a bound must not wedge us.
        fits = len(self._items) < self._max_writes and self._fixes + fixes <= self._max_fixes
        return fits or not self._items

    async def wait_for_room(self, fixes: int) -> None:
        """Block until a write of `fixes` fixes fits (the back-pressure point)."""
        if self._has_room(fixes):
            return
        BUFFER_FULL.inc()
        while not self._has_room(fixes):
            self._drained.clear()
            await self._drained.wait()

    def put(self, item: PendingWrite) -> None:
        """Append without waiting: callers waited for room first (or are tiny lifecycle writes)."""
        self._items.append(item)
        self._fixes += item.fixes
        BUFFER_FIXES.set(self._fixes)
        self._filled.set()

    async def take(self, limit: int) -> list[PendingWrite]:
        """The oldest writes (at least one, at most `limit`); they stay counted until `done`."""
        while not self._items:
            self._filled.clear()
            await self._filled.wait()
        return [self._items[i] for i in range(min(limit, len(self._items)))]

    def done(self, count: int) -> None:
        """The first `count` writes are durable."""
        for _ in range(count):
            self._fixes -= self._items.popleft().fixes
        BUFFER_FIXES.set(self._fixes)
        self._drained.set()


class Committer:
    """Drains a WriteBuffer into PostgreSQL; `on_durable` runs after each commit (PUBACKs, feed trim)."""

    def __init__(self, pool: asyncpg.Pool, buffer: WriteBuffer, ledger: AlertLedger,
                 on_durable: Callable[[list[PendingWrite]], None], max_per_commit: int) -> None:
        self.pool, self.buffer, self.ledger = pool, buffer, ledger
        self.on_durable = on_durable
        self.max_per_commit = max_per_commit
        self.database_up = True
        self.busy = False

    async def run(self) -> None:
        """Commit forever, in buffer order."""
        while True:
            raise_if_cancelling()
            items = await self.buffer.take(self.max_per_commit)
            self.busy = True
            try:
                await self._commit_until_done(items)
                self.buffer.done(len(items))
                self.on_durable(items)
            finally:
                self.busy = False

    async def _commit_until_done(self, items: list[PendingWrite]) -> None:
        backoff = 0.2
        while True:
            try:
                async with self.pool.acquire() as conn:
                    started = time.perf_counter()
                    await _commit(conn, items)
                    COMMIT_SECONDS.observe(time.perf_counter() - started)
                    if wanted := self.ledger.ids_wanted:
                        self.ledger.reserve(await writer.reserve_alert_ids(conn, wanted))
                if not self.database_up:
                    log.warning("database back: %d buffered write(s) committed", len(items))
                self.database_up = True
                return
            except DATABASE_DOWN as exc:
                raise_if_cancelling()
                self.database_up = False
                metrics.COMMIT_RETRIES.inc()
                log.warning("database unavailable (%s); %d write(s) buffered (%d fixes); retrying in %.1f s",
                            exc, len(self.buffer), self.buffer.pending_fixes, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


async def _commit(conn: asyncpg.Connection, items: list[PendingWrite]) -> None:
    """Everything of several writes in one transaction (one fixes merge for all of them)."""
    evaluations = [item.evaluation for item in items if item.evaluation is not None]
    async with conn.transaction():
        stored = await writer.write_fixes(conn, evaluations)
        await writer.write_device_events(conn, evaluations)
        await writer.write_dead_letters(conn, [d for e in evaluations for d in e.dead])
        # Alerts (revisions too) and renumberings keep buffer (= seq) order: a renumbered seq follows the
        # alerts before it, and a revision the opening it corrects.
        await writer.write_sequenced_alerts(conn, [ev for item in items for ev in item.alerts])
        await writer.renumber_events(conn, [item.renumber for item in items if item.renumber is not None])
    # Per-write counts are not known after one merge; the total is charged to the first batch.
    for item in items:
        item.stored = stored if evaluations and item.evaluation is evaluations[0] else 0
