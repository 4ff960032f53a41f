"""In-process fan-out of alert events; a subscriber that falls behind is cut off, never skipped.

The hub is also the feed's only seq allocator (single-writer assumption: one service process per
database). New events get the next seq in `append` and go out at once, before they are committed; they
stay in `pending` until the committer reports them durable, so a `?since=` replay finds them there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from emwatch.model import AlertEvent


class SubscriberOverflow(Exception):
    """The subscriber fell more than its bound behind; it must resume with `?since=` from storage."""


class Subscription:
    """One subscriber's bounded queue of published events."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[list[AlertEvent]] = asyncio.Queue()
        self._pending = 0
        self._maxsize = maxsize
        self.overflowed = False

    def offer(self, events: list[AlertEvent]) -> None:
        if self.overflowed:
            return
        if self._pending + len(events) > self._maxsize:
            # Dropping silently would hide an alert; flag it so the reader closes and resumes instead.
            self.overflowed = True
            self._queue.put_nowait([])
            return
        self._pending += len(events)
        self._queue.put_nowait(events)

    async def next_events(self) -> list[AlertEvent]:
        """Wait for the next events, in seq order."""
        events = await self._queue.get()
        if self.overflowed:
            raise SubscriberOverflow
        self._pending -= len(events)
        return events


class AlertFeed:
    """Hub that the pipeline and the API publish alert events to, in one seq order."""

    def __init__(self, subscriber_max: int = 10_000, last_seq: int = 0) -> None:
        self._subscribers: set[Subscription] = set()
        self._subscriber_max = subscriber_max
        self._held: dict[int, AlertEvent] = {}
        self._pending: dict[int, AlertEvent] = {}  # published, not yet committed; in seq order
        self.last_seq = last_seq
        # Set by the pipeline: makes a provisional lifecycle event's final seq durable (in seq order).
        self.on_provisional: Callable[[int, AlertEvent], None] | None = None

    def start_at(self, committed_max: int) -> None:
        """Continue after the highest seq stored (called once the database has been read)."""
        self.last_seq = max(self.last_seq, committed_max)

    def append(self, events: list[AlertEvent]) -> list[AlertEvent]:
        """Give new events the next seqs, publish them now and keep them pending until committed."""
        out: list[AlertEvent] = []
        for ev in events:
            self.last_seq += 1
            sequenced = dataclasses.replace(ev, seq=self.last_seq)
            self._pending[sequenced.seq] = sequenced
            out.append(sequenced)
        self._fan_out(out)
        return out

    def committed(self, upto_seq: int) -> None:
        """Events up to `upto_seq` are durable: replay reads them from the database from now on."""
        for seq in [s for s in self._pending if s <= upto_seq]:
            del self._pending[seq]

    def pending(self) -> list[AlertEvent]:
        """Published but not yet committed events, in seq order (a snapshot)."""
        return list(self._pending.values())

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """Register a subscriber for the duration of the block."""
        sub = Subscription(self._subscriber_max)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def publish(self, events: list[AlertEvent]) -> list[AlertEvent]:
        """Hand committed events to every subscriber in gap-free seq order; returns them as sent.

        A lifecycle event (store/lifecycle.py) arrives with a provisional seq (< 0): it gets its final
        seq here, and `on_provisional` queues the renumbering behind everything published before it.
        An event with a seq of its own waits here until every lower seq has gone out.
        """
        sent: list[AlertEvent] = []
        for ev in events:
            if ev.seq < 0:
                if self.on_provisional is None:
                    raise RuntimeError("no committer attached to renumber lifecycle events")
                [final] = self.append([ev])
                self.on_provisional(ev.seq, final)
                sent.append(final)
            elif ev.seq > self.last_seq:
                self._held[ev.seq] = ev
                sent.append(ev)
        ready: list[AlertEvent] = []
        while (nxt := self._held.pop(self.last_seq + 1, None)) is not None:
            ready.append(nxt)
            self.last_seq = nxt.seq
        self._fan_out(ready)
        return sent

    def _fan_out(self, events: list[AlertEvent]) -> None:
        if events:
            for sub in self._subscribers:
                sub.offer(events)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
