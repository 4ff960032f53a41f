"""In-process fan-out of alert events; a subscriber that falls behind is cut off, never skipped.

The hub is also the feed's only seq allocator (single-writer assumption: one service process per
database). New events get the next seq in `append` and go out at once, before they are committed; they
stay in `pending` until the committer reports them durable, so a `?since=` replay finds them there.

Each event is encoded to its wire message once, for every subscriber (a burst of tens of thousands of
alerts is otherwise encoded again per connected operator).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson

from emwatch.model import AlertEvent


@dataclass(frozen=True, slots=True)
class Delivery:
    """Events handed to a subscriber together, in seq order, with each one's wire message (JSON)."""

    events: list[AlertEvent]
    messages: list[bytes]

    @classmethod
    def of(cls, events: list[AlertEvent]) -> Delivery:
        return cls(events, [orjson.dumps(ev.to_message()) for ev in events])


class SubscriberOverflow(Exception):
    """The subscriber fell more than its bound behind; it must resume with `?since=` from storage."""


class Subscription:
    """One subscriber's bounded queue of published events."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._pending = 0
        self._maxsize = maxsize
        self.overflowed = False

    def offer(self, delivery: Delivery) -> None:
        if self.overflowed:
            return
        if self._pending + len(delivery.events) > self._maxsize:
            # Dropping silently would hide an alert; flag it so the reader closes and resumes instead.
            self.overflowed = True
            self._queue.put_nowait(Delivery([], []))
            return
        self._pending += len(delivery.events)
        self._queue.put_nowait(delivery)

    async def next_delivery(self) -> Delivery:
        """Wait for the next events (with their messages), in seq order; everything already waiting is
        handed out at once, so a reader that fell behind catches up in one step."""
        first = await self._queue.get()
        if self.overflowed:
            raise SubscriberOverflow
        if self._queue.empty():
            self._pending -= len(first.events)
            return first
        parts = [first]
        while not self._queue.empty():
            parts.append(self._queue.get_nowait())
        if self.overflowed:
            raise SubscriberOverflow
        events = [ev for p in parts for ev in p.events]
        self._pending -= len(events)
        return Delivery(events, [m for p in parts for m in p.messages])

    async def next_events(self) -> list[AlertEvent]:
        """Wait for the next events, in seq order."""
        return (await self.next_delivery()).events


class AlertFeed:
    """Hub that the pipeline and the API publish alert events to, in one seq order."""

    def __init__(self, subscriber_max: int = 10_000, last_seq: int = 0) -> None:
        self._subscribers: set[Subscription] = set()
        self._subscriber_max = subscriber_max
        self._held: dict[int, AlertEvent] = {}
        self._pending: deque[AlertEvent] = deque()  # published, not yet committed; in seq order
        self.last_seq = last_seq
        # Set by the pipeline: makes a provisional lifecycle event's final seq durable (in seq order).
        self.on_provisional: Callable[[int, AlertEvent], None] | None = None

    def start_at(self, committed_max: int) -> None:
        """Continue after the highest seq stored (called once the database has been read)."""
        self.last_seq = max(self.last_seq, committed_max)

    def append(self, events: list[AlertEvent]) -> Delivery:
        """Give new events the next seqs, publish them now and keep them pending until committed; returns
        them with their wire messages (the MQTT copy sends the same bytes)."""
        out: list[AlertEvent] = []
        for ev in events:
            self.last_seq += 1
            sequenced = ev.numbered(seq=self.last_seq)
            self._pending.append(sequenced)
            out.append(sequenced)
        delivery = Delivery.of(out)
        self._fan_out(delivery)
        return delivery

    def committed(self, upto_seq: int) -> None:
        """Events up to `upto_seq` are durable: replay reads them from the database from now on."""
        pending = self._pending
        while pending and pending[0].seq <= upto_seq:
            pending.popleft()

    def pending(self) -> list[AlertEvent]:
        """Published but not yet committed events, in seq order (a snapshot)."""
        return list(self._pending)

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
                [final] = self.append([ev]).events
                self.on_provisional(ev.seq, final)
                sent.append(final)
            elif ev.seq > self.last_seq:
                self._held[ev.seq] = ev
                sent.append(ev)
        ready: list[AlertEvent] = []
        while (nxt := self._held.pop(self.last_seq + 1, None)) is not None:
            ready.append(nxt)
            self.last_seq = nxt.seq
        if ready:
            self._fan_out(Delivery.of(ready))
        return sent

    def _fan_out(self, delivery: Delivery) -> None:
        if delivery.events:
            for sub in self._subscribers:
                sub.offer(delivery)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
