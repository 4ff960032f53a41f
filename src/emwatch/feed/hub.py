"""In-process fan-out of committed alert events; a subscriber that falls behind is cut off, never skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from emwatch.model import AlertEvent


class SubscriberOverflow(Exception):
    """The subscriber fell more than its bound behind; it must resume with `?since=` from storage."""


class Subscription:
    """One subscriber's bounded queue of committed events."""

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
        """Wait for the next committed events, in seq order."""
        events = await self._queue.get()
        if self.overflowed:
            raise SubscriberOverflow
        self._pending -= len(events)
        return events


class AlertFeed:
    """Hub that the pipeline publishes committed alert events to."""

    def __init__(self, subscriber_max: int = 10_000, last_seq: int = 0) -> None:
        self._subscribers: set[Subscription] = set()
        self._subscriber_max = subscriber_max
        self._held: dict[int, AlertEvent] = {}
        self.last_seq = last_seq

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """Register a subscriber for the duration of the block."""
        sub = Subscription(self._subscriber_max)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def publish(self, events: list[AlertEvent]) -> None:
        """Hand committed events to every subscriber in gap-free seq order.

        Two writers (the pipeline, an operator's acknowledgement) may finish their commits in one
        order and publish in the other; an event waits here until every lower seq has gone out.
        """
        for ev in events:
            if ev.seq > self.last_seq:
                self._held[ev.seq] = ev
        ready: list[AlertEvent] = []
        while (nxt := self._held.pop(self.last_seq + 1, None)) is not None:
            ready.append(nxt)
            self.last_seq = nxt.seq
        if ready:
            for sub in self._subscribers:
                sub.offer(ready)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
