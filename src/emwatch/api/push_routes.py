"""Web Push subscriptions of the logged-in user, and the VAPID key a browser subscribes with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from emwatch.api.auth import Svc, User, audit
from emwatch.notify.guard import destination_problem
from emwatch.notify.service import Notifier, destination_policy

router = APIRouter(prefix="/api/push")

B64URL = r"^[A-Za-z0-9_-]+={0,2}$"
URL = r"^https?://[!-~]+$"  # printable ASCII: push endpoints are plain URLs (and no NUL reaches SQL)


class PushKeys(BaseModel):
    """The `keys` of a browser's PushSubscription.toJSON()."""

    p256dh: Annotated[str, Field(pattern=B64URL, min_length=80, max_length=100)]  # 65-byte P-256 point
    auth: Annotated[str, Field(pattern=B64URL, min_length=16, max_length=32)]  # 16-byte secret


class SubscriptionIn(BaseModel):
    """A browser's PushSubscription.toJSON(), as the service worker page posts it."""

    endpoint: Annotated[str, Field(pattern=URL, max_length=2048)]
    keys: PushKeys


class EndpointIn(BaseModel):
    """Which subscription to drop."""

    endpoint: Annotated[str, Field(pattern=URL, max_length=2048)]


def _notifier(request: Request) -> Notifier:
    notifier: Notifier | None = getattr(request.app.state, "notifier", None)
    if notifier is None:
        raise HTTPException(503, "notifications are not running")
    return notifier


@router.get("/vapid-public-key")
async def vapid_public_key(request: Request, user: User) -> dict[str, str]:
    """The applicationServerKey for `pushManager.subscribe`."""
    return {"public_key": _notifier(request).vapid_public_key}


@router.post("/subscriptions", status_code=201)
async def subscribe(body: SubscriptionIn, svc: Svc, user: User) -> dict[str, int]:
    """Store (or take over) a subscription for the caller; alerts of their caseload are pushed to it.

    The endpoint is a URL the server will POST to: it must pass the destination guard (422 with why)."""
    if problem := await destination_problem(body.endpoint, destination_policy(svc.settings)):
        await audit(svc, user, "push.subscribe", "push_subscription", None, outcome="denied", reason=problem)
        raise HTTPException(422, f"push endpoint refused: {problem}")
    sub_id = await svc.pool.fetchval(
        "INSERT INTO push_subscriptions (username, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (endpoint) DO UPDATE SET username = $1, p256dh = $3, auth = $4 RETURNING id",
        user.username, body.endpoint, body.keys.p256dh, body.keys.auth,
    )
    await audit(svc, user, "push.subscribe", "push_subscription", sub_id)
    return {"id": int(sub_id)}


@router.delete("/subscriptions", status_code=204)
async def unsubscribe(body: EndpointIn, svc: Svc, user: User) -> Response:
    """Drop one of the caller's subscriptions (404 if they have none with that endpoint)."""
    sub_id = await svc.pool.fetchval(
        "DELETE FROM push_subscriptions WHERE username = $1 AND endpoint = $2 RETURNING id",
        user.username, body.endpoint,
    )
    if sub_id is None:
        raise HTTPException(404, "no such subscription")
    await audit(svc, user, "push.unsubscribe", "push_subscription", sub_id)
    return Response(status_code=204)
