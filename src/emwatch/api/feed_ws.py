"""WebSocket `/ws/alerts`: replay from PostgreSQL after `?since=`, then live, with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import logging

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from emwatch import metrics
from emwatch.api.deps import Services
from emwatch.feed.hub import SubscriberOverflow
from emwatch.store import repo

router = APIRouter()
log = logging.getLogger(__name__)

REPLAY_PAGE = 5_000


@router.websocket("/ws/alerts")
async def alert_feed(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    raw_since = websocket.query_params.get("since")
    await websocket.accept()  # accept first so a refusal can carry its reason in the close frame
    if raw_since is not None and not (raw_since.isdigit() and len(raw_since) < 19):
        await websocket.close(code=1008, reason="since must be a non-negative integer seq")
        return
    metrics.FEED_SUBSCRIBERS.inc()
    # Subscribe before reading history: whatever commits meanwhile is buffered, then de-duplicated by seq.
    with svc.feed.subscribe() as sub:
        try:
            last = int(raw_since) if raw_since is not None else svc.feed.last_seq
            if raw_since is not None:
                while page := await repo.alert_events_since(svc.pool, last, REPLAY_PAGE):
                    for message in page:
                        await websocket.send_text(orjson.dumps(message).decode())
                    last = page[-1]["seq"]
                    if len(page) < REPLAY_PAGE:
                        break
            closed = asyncio.create_task(_until_disconnect(websocket))
            try:
                while True:
                    waiting = asyncio.create_task(sub.next_events())
                    await asyncio.wait((waiting, closed), return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():  # the client went away: stop waiting for its events
                        waiting.cancel()
                        break
                    for event in waiting.result():
                        if event.seq > last:
                            await websocket.send_text(orjson.dumps(event.to_message()).decode())
                            last = event.seq
            finally:
                closed.cancel()
        except SubscriberOverflow:
            await websocket.close(code=1013, reason=f"too far behind; reconnect with ?since={last}")
        except WebSocketDisconnect:
            pass
        finally:
            metrics.FEED_SUBSCRIBERS.dec()


async def _until_disconnect(websocket: WebSocket) -> None:
    """Return when the client disconnects (clients send nothing we act on)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
