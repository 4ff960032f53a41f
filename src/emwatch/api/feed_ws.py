"""WebSocket `/ws/alerts`: replay after `?since=`, then live, with no gap and no duplicate.

Alerts go out before they are committed (pipeline.py), so a replay reads PostgreSQL and then the
events published but not yet committed (`AlertFeed.pending`). Committed events are always a prefix of
the published ones, so "the database, then the pending snapshot taken when we subscribed, then live"
covers every seq once; the running `last` drops what two of the three sources both hold.

The client authenticates with `Sec-WebSocket-Protocol: bearer, <access token>` (browsers cannot set
headers; a URL would leak the token into logs); only events of subjects in the user's scope are sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from emwatch import metrics
from emwatch.api.auth import Principal, audit, bearer_from_headers, principal_from_token
from emwatch.api.deps import Services
from emwatch.api.tokens import InvalidToken
from emwatch.feed.hub import SubscriberOverflow
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
    if raw_since is not None and not (raw_since.isdigit() and len(raw_since) < 19):
        refusal = (1008, "since must be a non-negative integer seq")
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
        try:
            last = int(raw_since) if raw_since is not None else live_from
            if raw_since is not None:
                while page := await repo.alert_events_since(svc.pool, last, REPLAY_PAGE):
                    for message in page:
                        if user.scope.sees(message["subject_id"], message["jurisdiction_id"]):
                            await websocket.send_text(orjson.dumps(message).decode())
                    last = page[-1]["seq"]
                    if len(page) < REPLAY_PAGE:
                        break
                for event in pending:
                    if event.seq > last:
                        if user.scope.sees(event.subject_id, event.jurisdiction_id):
                            await websocket.send_text(orjson.dumps(event.to_message()).decode())
                        last = event.seq
            closed = asyncio.create_task(_until_disconnect(websocket))
            expired = asyncio.create_task(asyncio.sleep(max(0.0, user.token_expires - svc.clock())))
            scope_at = svc.clock()
            try:
                while True:
                    waiting = asyncio.create_task(sub.next_events())
                    await asyncio.wait((waiting, closed, expired), return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():  # the client went away or its token expired: stop waiting
                        waiting.cancel()
                        if expired.done() and not closed.done():
                            reason = f"token expired; reconnect with ?since={last}"
                            await websocket.close(CLOSE_UNAUTHORIZED, reason)
                        break
                    if svc.clock() - scope_at > SCOPE_REFRESH_S:
                        user, scope_at = await _refreshed(svc, user), svc.clock()
                    for event in waiting.result():
                        if event.seq > last:
                            if user.scope.sees(event.subject_id, event.jurisdiction_id):
                                await websocket.send_text(orjson.dumps(event.to_message()).decode())
                            last = event.seq
            finally:
                closed.cancel()
                expired.cancel()
        except SubscriberOverflow:
            await websocket.close(code=1013, reason=f"too far behind; reconnect with ?since={last}")
        except WebSocketDisconnect:
            pass
        finally:
            metrics.FEED_SUBSCRIBERS.dec()


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
