"""Webhook for other agency systems: the alert as a JSON body, HMAC-SHA256 signed, POSTed to a URL."""

from __future__ import annotations

import hashlib
import hmac

import asyncpg
import httpx
import orjson

from emwatch.notify.channel import DeliveryError, Notification

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

    def __init__(self, pool: asyncpg.Pool, timeout_s: float = 10.0) -> None:
        self.pool = pool
        self.http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

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
        try:
            response = await self.http.post(row["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {exc!r}") from exc
        if response.is_success:
            return
        retryable = response.status_code >= 500 or response.status_code in (408, 429)
        raise DeliveryError(f"webhook answered {response.status_code}", permanent=not retryable)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.http.aclose()
