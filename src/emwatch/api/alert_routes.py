"""Alerts, their acknowledgement, and a subject's track."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query

from emwatch.api.deps import Services, services
from emwatch.api.schemas import AckIn, AlertOut
from emwatch.model import AlertEvent
from emwatch.store import repo

router = APIRouter(prefix="/api")
Svc = Annotated[Services, Depends(services)]


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    svc: Svc,
    status: Literal["open", "cleared"] | None = None,
    since: Annotated[int | None, Query(ge=0, description="only alerts with an event after this seq")] = None,
    subject_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[dict[str, Any]]:
    return await repo.list_alerts(svc.pool, status, since, subject_id, limit)


@router.post("/alerts/{alert_id}/ack")
async def acknowledge(
    alert_id: int, svc: Svc, body: Annotated[AckIn | None, Body()] = None
) -> dict[str, Any]:
    """Acknowledge an alert; the acknowledgement goes out on the feed like any alert event."""
    actor = (body or AckIn()).actor
    try:
        event = await repo.acknowledge_alert(svc.pool, alert_id, actor)
    except repo.NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    if not event:
        raise HTTPException(409, f"alert {alert_id} was acknowledged already")
    svc.feed.publish([AlertEvent.from_message(event)])
    return event


@router.get("/subjects/{subject_id}/track")
async def subject_track(
    subject_id: str,
    svc: Svc,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    """The subject's fixes as GeoJSON: one LineString of the path plus a Point per fix."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "from/to need a time zone, e.g. 2026-11-22T08:00:00+08:00")
    if start >= end:
        raise HTTPException(422, "'from' must be before 'to'")
    try:
        await repo.get_row(svc.pool, "subjects", subject_id)
    except repo.NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    fixes = await repo.track(svc.pool, subject_id, start, end, limit)
    points = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [f["lon"], f["lat"]]},
         "properties": {k: f[k] for k in ("device_id", "ts", "acc", "src", "batt")}}
        for f in fixes
    ]
    line = {"type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[f["lon"], f["lat"]] for f in fixes]},
            "properties": {"subject_id": subject_id, "fixes": len(fixes)}}
    return {"type": "FeatureCollection", "features": [line, *points]}
