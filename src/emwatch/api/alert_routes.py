"""Alerts and their lifecycle (acknowledge, resolve, bulk), evidence packets, tracks and last positions.

An alert is on the live feed before it is committed (pipeline.py): an operator may act on it a moment
before its row exists. Such an alert (still in the feed's `pending`) is waited for, up to
PENDING_WAIT_S; if it is still not stored then (a database outage), the answer is 503 with Retry-After,
never "not found".
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query

from emwatch import __version__
from emwatch.api.auth import AlertActor, Principal, Svc, User, audit, denied, now_utc
from emwatch.api.deps import Services
from emwatch.api.schemas import AckIn, AlertOut, BulkIn, ResolveIn
from emwatch.model import AlertEvent
from emwatch.store import lifecycle, repo, scoped

router = APIRouter(prefix="/api")
Actor = AlertActor
PENDING_WAIT_S = 5.0  # commits take milliseconds, seconds under heavy load; longer is an outage
PENDING_POLL_S = (0.01, 0.25)  # first and longest pause between looks (each scans the pending events)


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    svc: Svc,
    user: User,
    status: Literal["open", "cleared"] | None = None,
    since: Annotated[int | None, Query(ge=0, description="only alerts with an event after this seq")] = None,
    subject_id: str | None = None,
    lifecycle_state: Annotated[
        Literal["open", "acknowledged", "resolved"] | None, Query(alias="lifecycle")
    ] = None,
    jurisdiction_id: str | None = None,
    rule: str | None = None,
    severity: Literal["critical", "serious", "warning"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[dict[str, Any]]:
    """Alerts of the caller's subjects, newest first; `status` is the episode, `lifecycle` the handling."""
    return await scoped.list_alerts(
        svc.pool, user.scope, status=status, lifecycle=lifecycle_state, since=since, subject_id=subject_id,
        jurisdiction_id=jurisdiction_id, rule=rule, severity=severity, limit=limit,
    )


class NotStoredYet(Exception):
    """The alert was published on the feed but is still not committed after PENDING_WAIT_S."""


def _uncommitted(svc: Services, alert_id: int) -> AlertEvent | None:
    """The `alert` event that raised `alert_id`, if it is published on the feed but not yet committed."""
    # Only the `alert` event creates the row; later events of an alert (cleared, acknowledged) find it.
    return next((ev for ev in svc.feed.pending() if ev.alert_id == alert_id and ev.type == "alert"), None)


async def _stored(svc: Services, user: Principal, alert_id: int, deadline: float) -> bool:
    """Whether the alert may be read from the database now: False if the caller cannot see it (as if it
    did not exist); waits until `deadline` (monotonic) for one published but not yet committed."""
    # The feed adds an event to `pending` before anyone can see it, and removes it only once it is
    # committed: an id a client saw is in `pending` or in the database, whichever we look at first.
    raised = _uncommitted(svc, alert_id)
    if raised is None:
        return True
    if not user.scope.sees(raised.subject_id, raised.jurisdiction_id):
        return False
    pause, longest = PENDING_POLL_S
    while _uncommitted(svc, alert_id) is not None:
        if time.monotonic() >= deadline:
            raise NotStoredYet
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, longest)
    return True


def _not_stored_yet(alert_id: int) -> HTTPException:
    return HTTPException(
        503, f"alert {alert_id} was raised moments ago and is not stored yet; retry shortly",
        headers={"Retry-After": str(math.ceil(PENDING_WAIT_S))},
    )


async def _visible_alert(svc: Services, user: Principal, alert_id: int, action: str) -> dict[str, Any]:
    try:
        if await _stored(svc, user, alert_id, time.monotonic() + PENDING_WAIT_S):
            return await scoped.get_alert(svc.pool, user.scope, alert_id)
    except repo.NotFound:
        pass
    except NotStoredYet:
        await audit(svc, user, action, "alert", alert_id, outcome="failed", reason="not stored yet")
        raise _not_stored_yet(alert_id) from None
    raise await denied(svc, user, action, "alert", alert_id)


async def _act(svc: Services, user: Principal, alert_id: int, action: str,
               category: str | None = None, note: str | None = None) -> dict[str, Any]:
    """Apply one lifecycle action to a visible alert; returns the feed event ({} if nothing changed)."""
    now = now_utc(svc)
    if action == "acknowledge":
        event = await lifecycle.acknowledge(svc.pool, alert_id, user.username, now)
    else:
        assert category is not None and note is not None
        event = await lifecycle.resolve(svc.pool, alert_id, user.username, category, note, now)
    if event:  # the event's feed seq is given on publishing (store/lifecycle.py)
        event = svc.feed.publish([AlertEvent.from_message(event)])[0].to_message()
    await audit(svc, user, f"alert.{action}", "alert", alert_id, outcome="ok" if event else "failed",
                category=category, note=note, seq=event.get("seq"))
    return event


@router.post("/alerts/{alert_id}/ack")
async def acknowledge(alert_id: int, svc: Svc, user: Actor,
                      body: Annotated[AckIn | None, Body()] = None) -> dict[str, Any]:
    """Acknowledge an alert as the caller (a body's `actor` is ignored: the token says who). One on the feed
    but not yet stored is waited for; still not stored after 5 s: 503 with Retry-After."""
    await _visible_alert(svc, user, alert_id, "alert.acknowledge")
    event = await _act(svc, user, alert_id, "acknowledge")
    if not event:
        raise HTTPException(409, f"alert {alert_id} was acknowledged already")
    return event


@router.post("/alerts/{alert_id}/resolve")
async def resolve(alert_id: int, body: ResolveIn, svc: Svc, user: Actor) -> dict[str, Any]:
    """Close the handling of an alert with a category and a note (an episode may still be open); waits
    for an alert not yet stored like `ack`."""
    await _visible_alert(svc, user, alert_id, "alert.resolve")
    event = await _act(svc, user, alert_id, "resolve", body.category, body.note)
    if not event:
        raise HTTPException(409, f"alert {alert_id} was resolved already")
    return event


@router.post("/alerts/bulk")
async def bulk(body: BulkIn, svc: Svc, user: Actor) -> list[dict[str, Any]]:
    """Acknowledge or resolve many alerts; one result per id: done, unchanged, not_found, or not_stored_yet
    (raised moments ago and still not committed after waiting: retry it)."""
    if body.action == "resolve" and (body.category is None or body.note is None):
        raise HTTPException(422, "resolving needs a category and a note")
    results = []
    deadline = time.monotonic() + PENDING_WAIT_S  # one wait for the whole request, not one per id
    for alert_id in dict.fromkeys(body.ids):
        try:
            if not await _stored(svc, user, alert_id, deadline):
                raise repo.NotFound(f"no alert {alert_id}")
            await scoped.get_alert(svc.pool, user.scope, alert_id)
        except repo.NotFound:
            await audit(svc, user, f"alert.{body.action}", "alert", alert_id, outcome="denied", bulk=True)
            results.append({"id": alert_id, "result": "not_found"})
            continue
        except NotStoredYet:
            await audit(svc, user, f"alert.{body.action}", "alert", alert_id, outcome="failed", bulk=True,
                        reason="not stored yet")
            results.append({"id": alert_id, "result": "not_stored_yet"})
            continue
        event = await _act(svc, user, alert_id, body.action, body.category, body.note)
        results.append({"id": alert_id, "result": "done" if event else "unchanged", "seq": event.get("seq")})
    return results


@router.get("/alerts/{alert_id}/evidence")
async def evidence(
    alert_id: int, svc: Svc, user: User,
    before_min: Annotated[float, Query(ge=0, le=24 * 60)] = 15,
    after_min: Annotated[float, Query(ge=0, le=24 * 60)] = 15,
) -> dict[str, Any]:
    """The alert, its history, the fixes around it (with accuracy) and the zone version that fired it."""
    alert = await _visible_alert(svc, user, alert_id, "alert.evidence.read")
    start = alert["opened_at"] - timedelta(minutes=before_min)
    end = (alert["cleared_at"] or alert["opened_at"]) + timedelta(minutes=after_min)
    fixes = await lifecycle.evidence_fixes(svc.pool, alert["subject_id"], start, end)
    zone = None
    if alert["zone_id"] is not None:
        # created_at is when the pipeline committed the alert: the zone version in force then fired it.
        version = await lifecycle.zone_version_at(svc.pool, alert["zone_id"], alert["created_at"])
        if version is not None:
            zone = {"type": "Feature", "id": version["zone_id"], "geometry": version["geometry"],
                    "properties": {"kind": version["kind"], "version": version["version"],
                                   "radius_m": version["radius_m"], "schedule": version["schedule"],
                                   "valid_from": version["valid_from"]}}
    await audit(svc, user, "alert.evidence.read", "alert", alert_id, subject_id=alert["subject_id"],
                fixes=len(fixes), start=start.isoformat(), end=end.isoformat())
    return {
        "alert": alert, "events": await lifecycle.history(svc.pool, alert_id), "fixes": fixes, "zone": zone,
        "rule": {"name": alert["rule"], "engine_version": __version__},
        "window": {"from": start, "to": end},
    }


@router.get("/subjects/{subject_id}/track")
async def subject_track(
    subject_id: str,
    svc: Svc,
    user: User,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    """The subject's fixes as GeoJSON: one LineString of the path plus a Point per fix (audited)."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "from/to need a time zone, e.g. 2026-11-22T08:00:00+08:00")
    if start >= end:
        raise HTTPException(422, "'from' must be before 'to'")
    try:
        await scoped.get_subject(svc.pool, user.scope, subject_id)
    except repo.NotFound:
        raise await denied(svc, user, "subject.track.read", "subject", subject_id) from None
    fixes = await repo.track(svc.pool, subject_id, start, end, limit)
    await audit(svc, user, "subject.track.read", "subject", subject_id,
                start=start.isoformat(), end=end.isoformat(), fixes=len(fixes))
    points = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [f["lon"], f["lat"]]},
         "properties": {k: f[k] for k in ("device_id", "ts", "acc", "src", "batt")}}
        for f in fixes
    ]
    line = {"type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[f["lon"], f["lat"]] for f in fixes]},
            "properties": {"subject_id": subject_id, "fixes": len(fixes)}}
    return {"type": "FeatureCollection", "features": [line, *points]}


@router.get("/positions/latest")
async def latest_positions(svc: Svc, user: User) -> list[dict[str, Any]]:
    """The last known position of each of the caller's subjects (audited: it is position data)."""
    rows = await scoped.latest_positions(svc.pool, user.scope)
    await audit(svc, user, "positions.latest.read", "subject", None, subjects=len(rows))
    return rows
