"""An alert is on the live feed before it is committed: acting on it at once waits for it to be stored,
and answers 503 with Retry-After (never 404) if it is still not stored after the bound.

PostgreSQL is made slow the way a real one can be: a transaction holds a lock on `alerts`, so the
pipeline's commit of the alert waits (and retries) until the lock is released.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from emwatch.api.alert_routes import PENDING_WAIT_S
from tests.api.conftest import World, new_subject
from tests.e2e.conftest import OUTSIDE, feed

RESOLVE = {"category": "true_violation", "note": "called the subject"}



@asynccontextmanager
async def alerts_locked(world: World) -> AsyncIterator[None]:
    """While inside, no alert can be committed (reads go on): the lock is released on leaving."""
    conn = await asyncpg.connect(world.svc.settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE alerts IN EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def raised_uncommitted(world: World, subject: str, device: str) -> int:
    """Publish a fix outside the zone and return the id of the alert it raises, as seen on the feed."""
    async with feed(world.service, subject) as client:
        await world.service.publish_fix(device, *OUTSIDE)
        event = await client.next(timeout=60)
    assert event["type"] == "alert"
    return int(event["id"])


def act(world: World, user: str, how: str, alert_id: int) -> asyncio.Task[httpx.Response]:
    """Start acknowledging (or resolving) one alert, alone or in a bulk request, in the background."""
    http = world.client(user)
    request = {
        "ack": lambda: http.post(f"/api/alerts/{alert_id}/ack"),
        "resolve": lambda: http.post(f"/api/alerts/{alert_id}/resolve", json=RESOLVE),
        "bulk": lambda: http.post("/api/alerts/bulk", json={"ids": [alert_id], "action": "acknowledge"}),
    }[how]
    return asyncio.create_task(request())


async def audit_of(world: World, user: str, alert_id: int) -> list[dict[str, Any]]:
    r = await world.service.http.get("/api/audit", params={"actor": f"{world.tag}-{user}",
                                                           "target_id": str(alert_id)})
    assert r.status_code == 200, r.text
    return list(r.json())


@pytest.mark.parametrize("how", ["ack", "resolve", "bulk"])
async def test_acting_on_an_alert_seen_on_the_feed_waits_until_it_is_stored(world: World, how: str) -> None:
    subject, device = await new_subject(world)
    async with alerts_locked(world):
        alert_id = await raised_uncommitted(world, subject, device)
        answer = act(world, "op1", how, alert_id)
        await asyncio.sleep(PENDING_WAIT_S / 5)
        assert not answer.done(), (await answer).text  # neither 404 nor anything else: it waits
    r = await answer
    assert r.status_code == 200, r.text
    if how == "bulk":
        assert r.json()[0]["result"] == "done"
    else:
        assert (r.json()["id"], r.json()["type"]) == (alert_id, "acknowledged" if how == "ack" else "resolved")
    state = (await world.service.http.get(f"/api/alerts/{alert_id}/evidence")).json()["alert"]["lifecycle"]
    assert state == ("resolved" if how == "resolve" else "acknowledged")
    action = "alert.resolve" if how == "resolve" else "alert.acknowledge"
    assert [(row["action"], row["outcome"]) for row in await audit_of(world, "op1", alert_id)] == [(action, "ok")]


async def test_an_alert_still_not_stored_after_the_bound_is_503_with_retry_after(world: World) -> None:
    subject, device = await new_subject(world)
    async with alerts_locked(world):
        alert_id = await raised_uncommitted(world, subject, device)
        started = time.monotonic()
        r, bulk = await asyncio.gather(act(world, "op1", "ack", alert_id), act(world, "op1", "bulk", alert_id))
        assert time.monotonic() - started >= PENDING_WAIT_S
        assert r.status_code == 503 and "not stored yet" in r.json()["detail"], r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert bulk.status_code == 200 and bulk.json()[0]["result"] == "not_stored_yet", bulk.text
    rows = await audit_of(world, "op1", alert_id)
    assert [(row["action"], row["outcome"], row["detail"].get("reason")) for row in rows] == [
        ("alert.acknowledge", "failed", "not stored yet")] * 2
    r = await act(world, "op1", "ack", alert_id)  # the retry the 503 asked for
    assert r.status_code == 200, r.text


async def test_an_uncommitted_alert_out_of_scope_is_not_found_at_once(world: World) -> None:
    subject, device = await new_subject(world, "o1")
    async with alerts_locked(world):
        alert_id = await raised_uncommitted(world, subject, device)
        started = time.monotonic()
        r = await act(world, "off3", "ack", alert_id)  # an officer of o3: the subject is not theirs
        assert r.status_code == 404, r.text
        assert time.monotonic() - started < PENDING_WAIT_S  # no wait tells them the alert exists
    assert [(row["action"], row["outcome"]) for row in await audit_of(world, "off3", alert_id)] == [
        ("alert.acknowledge", "denied")]
