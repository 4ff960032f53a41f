"""LISTEN on a PostgreSQL channel over a connection of its own that outlives database restarts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from emwatch.store.db import CONNECTION_ERRORS, raise_if_cancelling

log = logging.getLogger(__name__)


class ChannelListener:
    """Calls `on_notify` for every NOTIFY on `channel`, and once after every (re)connect: whatever was
    notified while no connection listened is lost, so the owner must assume that anything changed.

    A lost connection (server restart, dropped socket, or a keepalive query that fails or hangs) is
    reconnected with capped exponential backoff; `run()` returns only when cancelled.
    """

    def __init__(self, dsn: str, channel: str, on_notify: Callable[[], None], keepalive_s: float = 10.0,
                 first_delay_s: float = 0.5, max_delay_s: float = 15.0) -> None:
        self.dsn, self.channel, self.on_notify = dsn, channel, on_notify
        self.keepalive_s, self.first_delay_s, self.max_delay_s = keepalive_s, first_delay_s, max_delay_s
        self.connected = False
        self.connects = 0  # successful LISTENs so far (the first one included)
        self.listening = asyncio.Event()  # set at the first LISTEN: a load after it misses nothing

    async def wait_listening(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for the first LISTEN; whether it is in place."""
        try:
            await asyncio.wait_for(self.listening.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        delay = self.first_delay_s
        while True:
            try:
                await self._listen_once()
                delay = self.first_delay_s  # it was up: the next failure starts the backoff over
            except CONNECTION_ERRORS as exc:
                raise_if_cancelling()
                log.warning("LISTEN %s: connection unavailable (%s: %s); retrying in %.1f s",
                            self.channel, type(exc).__name__, exc, delay)
                log.debug("LISTEN %s connection failure", self.channel, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay_s)

    async def _listen_once(self) -> None:
        """One connection's life: LISTEN, report a resync, wait until the connection is lost."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(self.channel, self._notified)
            self.connected = True
            self.connects += 1
            self.listening.set()
            if self.connects > 1:
                log.info("LISTEN %s: reconnected; reloading everything it may have missed", self.channel)
            self.on_notify()  # notifications before this LISTEN were not seen: resync once
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.keepalive_s)
                except TimeoutError:  # quiet: make sure the connection is really alive
                    await conn.fetchval("SELECT 1", timeout=self.keepalive_s)
            raise ConnectionResetError("connection closed")
        finally:
            self.connected = False
            conn.terminate()  # never waits on a dead socket

    def _notified(self, *_: object) -> None:
        self.on_notify()
