"""Jurisdictions, subjects, devices and zones: the supervision registry over HTTP, scoped and audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query

from emwatch.api.auth import AdminOrSupervisor, Principal, Svc, User, Writer, audit, denied
from emwatch.api.deps import Services
from emwatch.api.schemas import DeviceIn, DeviceOut, JurisdictionIn, JurisdictionOut, SubjectIn, SubjectOut
from emwatch.geo.geojson import ZoneError, zone_to_feature, zones_from_geojson
from emwatch.geo.zones import Zone
from emwatch.rules.schedule import ScheduleError, parse_schedule
from emwatch.store import repo, scoped
from emwatch.store.registry_source import zone_feature_from_row, zone_row

router = APIRouter(prefix="/api")
Limit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0)]


async def _create(svc: Services, user: Principal, table: str, values: dict[str, Any]) -> dict[str, Any]:
    try:
        row = await repo.insert_row(svc.pool, table, values)
    except repo.Conflict as exc:
        raise HTTPException(409, str(exc)) from exc
    except repo.NotFound as exc:
        raise HTTPException(422, f"unknown reference: {exc}") from exc
    await audit(svc, user, f"{table[:-1]}.create", table[:-1], values["id"], values=values)
    return row


async def _refuse(svc: Services, user: Principal, action: str, kind: str, target: object, why: str) -> None:
    raise await denied(svc, user, action, kind, target, 403, why)


@router.post("/jurisdictions", status_code=201, response_model=JurisdictionOut)
async def create_jurisdiction(body: JurisdictionIn, svc: Svc, user: AdminOrSupervisor) -> dict[str, Any]:
    """Admins create anywhere; a supervisor only below their own jurisdiction."""
    if user.role != "admin" and body.parent_id not in user.scope.jurisdictions:
        await _refuse(svc, user, "jurisdiction.create", "jurisdiction", body.id,
                      "parent outside your jurisdiction")
    return await _create(svc, user, "jurisdictions", body.model_dump())


@router.get("/jurisdictions", response_model=list[JurisdictionOut])
async def list_jurisdictions(
    svc: Svc, user: User, limit: Limit = 1000, offset: Offset = 0
) -> list[dict[str, Any]]:
    return await scoped.list_jurisdictions(svc.pool, user.scope, limit, offset)


@router.post("/subjects", status_code=201, response_model=SubjectOut)
async def create_subject(body: SubjectIn, svc: Svc, user: Writer) -> dict[str, Any]:
    if not user.manages(body.jurisdiction_id):
        await _refuse(svc, user, "subject.create", "subject", body.id, "jurisdiction outside your scope")
    return await _create(svc, user, "subjects", body.model_dump())


@router.get("/subjects", response_model=list[SubjectOut])
async def list_subjects(
    svc: Svc, user: User, limit: Limit = 1000, offset: Offset = 0,
    jurisdiction_id: str | None = None, risk_level: str | None = None,
) -> list[dict[str, Any]]:
    return await scoped.list_subjects(svc.pool, user.scope, limit, offset, jurisdiction_id, risk_level)


@router.get("/subjects/{subject_id}", response_model=SubjectOut)
async def get_subject(subject_id: str, svc: Svc, user: User) -> dict[str, Any]:
    try:
        return await scoped.get_subject(svc.pool, user.scope, subject_id)
    except repo.NotFound:
        raise await denied(svc, user, "subject.read", "subject", subject_id) from None


@router.post("/devices", status_code=201, response_model=DeviceOut)
async def create_device(body: DeviceIn, svc: Svc, user: Writer) -> dict[str, Any]:
    """A device for a subject the caller manages; unassigned devices are stocked by admins only."""
    if body.subject_id is None:
        if user.role != "admin":
            await _refuse(svc, user, "device.create", "device", body.id,
                          "only admins stock unassigned devices")
    else:
        await _managed(svc, user, body.subject_id, "device.create", "device", body.id)
    return await _create(svc, user, "devices", body.model_dump())


async def _managed(
    svc: Services, user: Principal, subject_id: str, action: str, kind: str, target: str
) -> None:
    try:
        subject = await scoped.get_subject(svc.pool, user.scope, subject_id)
    except repo.NotFound:
        raise HTTPException(422, f"unknown reference: no subject {subject_id!r}") from None
    if not user.manages(subject["jurisdiction_id"]):
        await _refuse(svc, user, action, kind, target, "subject outside your scope")


@router.get("/devices", response_model=list[DeviceOut])
async def list_devices(svc: Svc, user: User, limit: Limit = 1000, offset: Offset = 0) -> list[dict[str, Any]]:
    return await scoped.list_devices(svc.pool, user.scope, limit, offset)


@router.get("/devices/{device_id}", response_model=DeviceOut)
async def get_device(device_id: str, svc: Svc, user: User) -> dict[str, Any]:
    try:
        return await scoped.get_device(svc.pool, user.scope, device_id)
    except repo.NotFound:
        raise await denied(svc, user, "device.read", "device", device_id) from None


async def _check_zone(svc: Services, user: Principal, zone: Zone) -> None:
    if zone.subject_id is not None:
        await _managed(svc, user, zone.subject_id, "zone.create", "zone", zone.id)
    elif zone.jurisdiction_id is not None:
        if not user.manages(zone.jurisdiction_id):
            await _refuse(svc, user, "zone.create", "zone", zone.id, "jurisdiction outside your scope")
    elif user.role != "admin":  # a group zone applies across jurisdictions
        await _refuse(svc, user, "zone.create", "zone", zone.id, "only admins create group zones")


@router.post("/zones", status_code=201)
async def create_zones(svc: Svc, user: Writer, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Store a GeoJSON Feature or FeatureCollection of zones (see geofences/README.md)."""
    try:
        zones = zones_from_geojson(body)
        for zone in zones:
            if zone.schedule is not None:
                parse_schedule(zone.schedule)
    except (ZoneError, ScheduleError) as exc:
        raise HTTPException(422, f"invalid zone: {exc}") from exc
    for zone in zones:
        await _check_zone(svc, user, zone)
    try:
        await repo.insert_zones(svc.pool, [zone_row(z) for z in zones])
    except repo.Conflict as exc:
        raise HTTPException(409, str(exc)) from exc
    except repo.NotFound as exc:
        raise HTTPException(422, f"unknown reference: {exc}") from exc
    features = [zone_to_feature(z) for z in zones]
    for feature in features:
        await audit(svc, user, "zone.create", "zone", feature["id"], feature=feature)
    return {"type": "FeatureCollection", "features": features}


@router.get("/zones")
async def list_zones(svc: Svc, user: User, limit: Limit = 1000, offset: Offset = 0) -> dict[str, Any]:
    rows = await scoped.list_zones(svc.pool, user.scope, limit, offset)
    return {"type": "FeatureCollection", "features": [zone_feature_from_row(r) for r in rows]}


@router.get("/zones/{zone_id}")
async def get_zone(zone_id: str, svc: Svc, user: User) -> dict[str, Any]:
    try:
        return zone_feature_from_row(await scoped.get_zone(svc.pool, user.scope, zone_id))
    except repo.NotFound:
        raise await denied(svc, user, "zone.read", "zone", zone_id) from None
