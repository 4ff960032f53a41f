"""The write buffer between evaluation and the committer: bounded by writes and by fixes, so that a
slow or absent database blocks evaluation (back-pressure) instead of growing memory or dropping data."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from emwatch.model import AlertEvent
from emwatch.rules.engine import Evaluation

BUFFER_FIXES = Gauge("emwatch_commit_buffer_fixes", "Fixes evaluated and published, not yet committed.")
BUFFER_FULL = Counter("emwatch_commit_buffer_full_total", "Times evaluation waited for the write buffer.")


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
        self._taken = 0  # the first writes, handed to transactions in flight
        self._max_writes, self._max_fixes = max_writes, max_fixes
        self._filled = asyncio.Event()  # set when something was put
        self._drained = asyncio.Event()  # set when something was committed

    def __len__(self) -> int:
        return len(self._items)

    @property
    def pending_fixes(self) -> int:
        return self._fixes

    @property
    def untaken(self) -> int:
        """Writes no transaction has taken yet."""
        return len(self._items) - self._taken

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

    async def wait_untaken(self) -> None:
        """Until some write is not taken yet."""
        while not self.untaken:
            self._filled.clear()
            await self._filled.wait()

    async def take(self, limit: int) -> list[PendingWrite]:
        """The oldest writes not taken yet (at least one, at most `limit`); they stay counted until `done`."""
        await self.wait_untaken()
        taken = [self._items[i] for i in range(self._taken, min(self._taken + limit, len(self._items)))]
        self._taken += len(taken)
        return taken

    def done(self, count: int) -> None:
        """The first `count` writes (all taken) are durable."""
        for _ in range(count):
            self._fixes -= self._items.popleft().fixes
        self._taken -= count
        BUFFER_FIXES.set(self._fixes)
        self._drained.set()
