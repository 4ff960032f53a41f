"""Web Push (RFC 8030, RFC 8291 aes128gcm, VAPID RFC 8292) to an officer's browser or installed PWA."""

from __future__ import annotations

import base64

import aiohttp
import asyncpg
import orjson
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid, Vapid01
from pywebpush import WebPushException, webpush_async

from emwatch.notify.channel import DeliveryError, Notification
from emwatch.notify.guard import DestinationPolicy, UnsafeDestination, guarded_session

TTL_S = 3600  # a push service may hold the message this long for an offline phone
GONE = (404, 410)  # the push service forgot the subscription: delete it (RFC 8030 §7.3)


def b64url(data: bytes) -> str:
    """Unpadded base64url, the encoding of every Web Push key."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_vapid(private_key: str | None) -> Vapid01:
    """The VAPID key pair from a base64url raw/DER private key, or a fresh one for this process."""
    if private_key:
        return Vapid.from_string(private_key=private_key)
    vapid = Vapid()
    vapid.generate_keys()
    return vapid


def application_server_key(vapid: Vapid01) -> str:
    """The public key a browser passes as `applicationServerKey` to `pushManager.subscribe`."""
    return b64url(vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


class WebPushChannel:
    """Encrypts the alert for one subscription and POSTs it to its push service; 201 is delivered."""

    name = "webpush"

    def __init__(
        self, pool: asyncpg.Pool, vapid: Vapid01, subject: str, timeout_s: float = 10.0,
        guard: DestinationPolicy | None = None,
    ) -> None:
        self.pool, self.vapid, self.subject = pool, vapid, subject
        self.timeout_s, self.guard = timeout_s, guard or DestinationPolicy()
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, notification: Notification) -> None:
        """Push once; an expired subscription is deleted and the notification fails for good."""
        sub_id = int(notification.target)
        row = await self.pool.fetchrow(
            "SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE id = $1", sub_id
        )
        if row is None:
            raise DeliveryError("push subscription removed", permanent=True)
        if self._session is None:
            self._session = guarded_session(self.guard, self.timeout_s)
        urgency = "high" if notification.payload.get("severity") == "critical" else "normal"
        info = {"endpoint": row["endpoint"], "keys": {"p256dh": row["p256dh"], "auth": row["auth"]}}
        try:
            await webpush_async(
                subscription_info=info, data=orjson.dumps(notification.payload).decode(),
                # a fresh claims dict per call: pywebpush writes the endpoint's `aud` into it
                vapid_private_key=self.vapid, vapid_claims={"sub": self.subject},
                content_encoding="aes128gcm", ttl=TTL_S, aiohttp_session=self._session,
                headers={"Urgency": urgency},
            )
        except UnsafeDestination as exc:  # registered when it was public; it is not now (DNS rebinding)
            raise DeliveryError(f"push endpoint refused: {exc}", permanent=True) from exc
        except WebPushException as exc:
            status = exc.status_code
            if status in GONE:
                await self.pool.execute("DELETE FROM push_subscriptions WHERE id = $1", sub_id)
                raise DeliveryError(f"push subscription expired ({status})", permanent=True) from exc
            retryable = status is None or status >= 500 or status in (408, 429)
            raise DeliveryError(f"push service answered {status}", permanent=not retryable) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryError(f"push service unreachable: {exc!r}") from exc

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
