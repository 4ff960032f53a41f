"""Deliver due outbox rows on their channels, with exponential backoff; all state lives in the table."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from emwatch.metrics import NOTIFICATIONS
from emwatch.notify.channel import Channel, DeliveryError, Notification
from emwatch.store import outbox

log = logging.getLogger(__name__)

# Claim due rows: pending ones whose time has come, and in-flight ones whose lease ran out (the sender
# that claimed them died mid-delivery). SKIP LOCKED lets several instances share the outbox.
_CLAIM = """
UPDATE notifications SET status = 'sent', attempts = attempts + 1, sent_at = $1, next_attempt_at = $2
WHERE id IN (
    SELECT id FROM notifications WHERE status IN ('pending', 'sent') AND next_attempt_at <= $1
    ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
)
RETURNING id, alert_seq, alert_id, username, channel, target, payload::text AS payload, attempts
"""
# `status = 'sent'` guards every outcome: a row already delivered is never reopened.
_DELIVERED = (
    "UPDATE notifications SET status = 'delivered', delivered_at = $2, last_error = NULL"
    " WHERE id = $1 AND status = 'sent'"
)
_RETRY = (
    "UPDATE notifications SET status = 'pending', next_attempt_at = $2, last_error = $3"
    " WHERE id = $1 AND status = 'sent'"
)
_FAILED = "UPDATE notifications SET status = 'failed', last_error = $2 WHERE id = $1 AND status = 'sent'"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: base × 2^(attempt-1), capped; after `max_attempts` the row fails."""

    base_s: float = 2.0
    max_s: float = 600.0
    max_attempts: int = 12
    lease_s: float = 60.0  # longer than any channel's timeout, so a live delivery is never claimed twice

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed try."""
        return float(min(self.base_s * 2 ** max(attempts - 1, 0), self.max_s))


class Sender:
    """Delivers the outbox: `run()` polls until cancelled; `deliver_due()` does one round (for tests)."""

    def __init__(
        self, pool: asyncpg.Pool, channels: Mapping[str, Channel], clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None, poll_s: float = 1.0, batch: int = 100,
    ) -> None:
        self.pool, self.channels, self.clock = pool, dict(channels), clock
        self.policy = policy or RetryPolicy()
        self.poll_s, self.batch = poll_s, batch
        self._escalations_seen = 0  # from 0 after a restart: the sweep is idempotent

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    async def run(self) -> None:
        """Deliver due notifications every `poll_s` (at once again while a round was full) until cancelled."""
        while True:
            try:
                done = await self.deliver_due()
            except Exception as exc:  # the database away, the pool restarting: the rows wait in the table
                log.warning("notification round failed (%r); retrying", exc)
                done = 0
            if done < self.batch:
                await asyncio.sleep(self.poll_s)

    async def deliver_due(self) -> int:
        """Claim what is due, deliver it concurrently, record each outcome; returns how many were tried."""
        self._escalations_seen = await outbox.enqueue_escalations(self.pool, self._escalations_seen)
        now = self._now()
        lease = now + timedelta(seconds=self.policy.lease_s)
        rows = await self.pool.fetch(_CLAIM, now, lease, self.batch)
        claimed = [
            Notification(
                id=r["id"], alert_seq=r["alert_seq"], alert_id=r["alert_id"], username=r["username"],
                channel=r["channel"], target=r["target"], payload=orjson.loads(r["payload"]),
                attempts=r["attempts"],
            )
            for r in rows
        ]
        await asyncio.gather(*(self._deliver(n) for n in claimed))
        return len(claimed)

    async def _deliver(self, n: Notification) -> None:
        channel = self.channels.get(n.channel)
        try:
            if channel is None:
                raise DeliveryError(f"channel {n.channel!r} is not configured")  # may be enabled later
            await channel.deliver(n)
        except DeliveryError as exc:
            await self._failed(n, str(exc), exc.permanent)
        except Exception as exc:  # a channel bug must not stop the others; the row retries
            log.exception("channel %s raised on notification %d", n.channel, n.id)
            await self._failed(n, repr(exc), permanent=False)
        else:
            await self.pool.execute(_DELIVERED, n.id, self._now())
            NOTIFICATIONS.labels(n.channel, "delivered").inc()

    async def _failed(self, n: Notification, error: str, permanent: bool) -> None:
        if permanent or n.attempts >= self.policy.max_attempts:
            await self.pool.execute(_FAILED, n.id, error[:1000])
            NOTIFICATIONS.labels(n.channel, "failed").inc()
            log.warning("notification %d on %s failed for good: %s", n.id, n.channel, error)
            return
        retry_at = self._now() + timedelta(seconds=self.policy.delay(n.attempts))
        await self.pool.execute(_RETRY, n.id, retry_at, error[:1000])
        NOTIFICATIONS.labels(n.channel, "retried").inc()


async def close_channels(channels: Mapping[str, Channel]) -> None:
    """Close every channel, whatever the others do."""
    await asyncio.gather(*(c.aclose() for c in channels.values()), return_exceptions=True)
