"""Webhook for other agency systems: the alert as a JSON body, HMAC-SHA256 signed, POSTed to a URL."""

from __future__ import annotations

import hashlib
import hmac

import aiohttp
import asyncpg
import orjson

from emwatch.notify.channel import DeliveryError, Notification
from emwatch.notify.guard import DestinationPolicy, UnsafeDestination, guarded_session

SIGNATURE_HEADER = "X-Emwatch-Signature"
DELIVERY_HEADER = "X-Emwatch-Delivery"  # the notification id: a receiver dedupes retries with it


def sign(secret: str, body: bytes) -> str:
    """The signature header value: `sha256=` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether a signature header matches the body (constant time); what a receiver runs."""
    return hmac.compare_digest(sign(secret, body), header)


class WebhookChannel:
    """POSTs to the webhook named by the notification's target; 2xx is delivered, 5xx/429 retried."""

    name = "webhook"

    def __init__(
        self, pool: asyncpg.Pool, timeout_s: float = 10.0, guard: DestinationPolicy | None = None
    ) -> None:
        self.pool, self.timeout_s, self.guard = pool, timeout_s, guard or DestinationPolicy()
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, notification: Notification) -> None:
        """Send the signed body once; the sender retries on a DeliveryError that is not permanent."""
        row = await self.pool.fetchrow(
            "SELECT url, secret FROM webhooks WHERE id = $1 AND enabled", int(notification.target)
        )
        if row is None:
            raise DeliveryError("webhook removed or disabled", permanent=True)
        body = orjson.dumps(notification.payload)
        headers = {
            "Content-Type": "application/json", SIGNATURE_HEADER: sign(row["secret"], body),
            DELIVERY_HEADER: str(notification.id),
        }
        if self._session is None:
            self._session = guarded_session(self.guard, self.timeout_s)
        try:
            async with self._session.post(row["url"], data=body, headers=headers, allow_redirects=False) as r:
                status = r.status
        except UnsafeDestination as exc:  # registered when it was public; it is not now (DNS rebinding)
            raise DeliveryError(f"webhook URL refused: {exc}", permanent=True) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryError(f"webhook unreachable: {exc!r}") from exc
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in (408, 429)
        raise DeliveryError(f"webhook answered {status}", permanent=not retryable)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None
