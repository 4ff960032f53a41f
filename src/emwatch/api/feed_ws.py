"""WebSocket `/ws/alerts`: replay after `?since=`, then live, with no gap and no duplicate.

Alerts go out before they are committed (pipeline.py), so a replay reads PostgreSQL and then the
events published but not yet committed (`AlertFeed.pending`). Committed events are always a prefix of
the published ones, so "the database, then the pending snapshot taken when we subscribed, then live"
covers every seq once; the running `last` drops what two of the three sources both hold.

The client authenticates with `Sec-WebSocket-Protocol: bearer, <access token>` (browsers cannot set
headers; a URL would leak the token into logs); only events of subjects in the user's scope are sent.
With `?frames=batch` each text message is a JSON array of the events that are ready together: a burst
of alerts costs one send, not one per alert (docs/protocol.md 3.1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from emwatch import metrics
from emwatch.api.auth import Principal, audit, bearer_from_headers, principal_from_token
from emwatch.api.deps import Services
from emwatch.api.tokens import InvalidToken
from emwatch.feed.hub import Delivery, SubscriberOverflow
from emwatch.store import repo, users
from emwatch.store.committer import DATABASE_DOWN

router = APIRouter()
log = logging.getLogger(__name__)

REPLAY_PAGE = 5_000
SCOPE_REFRESH_S = 30.0  # caseload changes reach a connected officer within this long
CLOSE_UNAUTHORIZED = 4401  # application close code: log in (again), then reconnect with ?since=


@router.websocket("/ws/alerts")
async def alert_feed(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    raw_since = websocket.query_params.get("since")
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    # Echo `bearer`, or a browser drops the connection.
    subprotocol = "bearer" if offered[0] == "bearer" else None
    refusal: tuple[int, str] | None = None
    frames = websocket.query_params.get("frames", "single")
    if raw_since is not None and not (raw_since.isdigit() and len(raw_since) < 19):
        refusal = (1008, "since must be a non-negative integer seq")
    elif frames not in ("single", "batch"):
        refusal = (1008, "frames must be 'single' or 'batch'")
    else:
        try:
            user = await principal_from_token(svc, websocket, bearer_from_headers(websocket))
        except InvalidToken as exc:
            refusal = (CLOSE_UNAUTHORIZED, f"unauthorized: {exc}"[:120])
    if refusal is not None:
        await websocket.accept(subprotocol=subprotocol)  # accepted, so that the close carries its reason
        await websocket.close(code=refusal[0], reason=refusal[1])
        return
    # Subscribe before accepting, and so before reading history or recording the connection: whatever
    # is published from the moment the client is connected is buffered, then de-duplicated by seq; what
    # was published before (committed or not) is in the database or in `pending`.
    with svc.feed.subscribe() as sub:
        pending, live_from = svc.feed.pending(), svc.feed.last_seq
        await websocket.accept(subprotocol=subprotocol)
        await audit(svc, user, "feed.connect", None, None, since=raw_since)
        metrics.FEED_SUBSCRIBERS.inc()
        send = _sender(websocket, batched=frames == "batch")
        try:
            last = int(raw_since) if raw_since is not None else live_from
            if raw_since is not None:
                while page := await repo.alert_events_since(svc.pool, last, REPLAY_PAGE):
                    await send([orjson.dumps(m) for m in page
                                if user.scope.sees(m["subject_id"], m["jurisdiction_id"])])
                    last = page[-1]["seq"]
                    if len(page) < REPLAY_PAGE:
                        break
                unsent = [ev for ev in pending if ev.seq > last]
                if unsent:
                    await send(_visible(Delivery.of(unsent), user, last))
                    last = unsent[-1].seq
            closed = asyncio.create_task(_until_disconnect(websocket))
            expired = asyncio.create_task(asyncio.sleep(max(0.0, user.token_expires - svc.clock())))
            scope_at = svc.clock()
            try:
                while True:
                    waiting = asyncio.create_task(sub.next_delivery())
                    await asyncio.wait((waiting, closed, expired), return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():  # the client went away or its token expired: stop waiting
                        waiting.cancel()
                        if expired.done() and not closed.done():
                            reason = f"token expired; reconnect with ?since={last}"
                            await websocket.close(CLOSE_UNAUTHORIZED, reason)
                        break
                    if svc.clock() - scope_at > SCOPE_REFRESH_S:
                        user, scope_at = await _refreshed(svc, user), svc.clock()
                    delivery = waiting.result()
                    await send(_visible(delivery, user, last))
                    last = max(last, delivery.events[-1].seq) if delivery.events else last
            finally:
                closed.cancel()
                expired.cancel()
        except SubscriberOverflow:
            await websocket.close(code=1013, reason=f"too far behind; reconnect with ?since={last}")
        except WebSocketDisconnect:
            pass
        finally:
            metrics.FEED_SUBSCRIBERS.dec()


def _visible(delivery: Delivery, user: Principal, after_seq: int) -> list[bytes]:
    """The messages of the events after `after_seq` that the user may see."""
    sees = user.scope.sees
    return [m for ev, m in zip(delivery.events, delivery.messages, strict=True)
            if ev.seq > after_seq and sees(ev.subject_id, ev.jurisdiction_id)]


def _sender(websocket: WebSocket, batched: bool) -> Callable[[list[bytes]], Awaitable[None]]:
    """Sends messages as the client asked: one event per text message, or one JSON array per call."""

    async def one_each(messages: list[bytes]) -> None:
        for m in messages:
            await websocket.send_text(m.decode())

    async def as_array(messages: list[bytes]) -> None:
        if messages:
            await websocket.send_text((b"[" + b",".join(messages) + b"]").decode())

    return as_array if batched else one_each


async def _refreshed(svc: Services, user: Principal) -> Principal:
    """The same user with a freshly computed scope (caseloads change while a client stays connected);
    while the database is away the scope stays as it was: alerts keep flowing during an outage."""
    try:
        scope = await users.scope_of(svc.pool, user.role, user.username, user.jurisdiction_id)
    except DATABASE_DOWN as exc:
        log.warning("feed scope not refreshed: database unavailable (%s)", exc)
        return user
    return dataclasses.replace(user, scope=scope)


async def _until_disconnect(websocket: WebSocket) -> None:
    """Return when the client disconnects (clients send nothing we act on)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
