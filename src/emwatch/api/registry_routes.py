"""Jurisdictions, subjects, devices and zones: the supervision registry over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query

from emwatch.api.deps import Services, services
from emwatch.api.schemas import DeviceIn, DeviceOut, JurisdictionIn, JurisdictionOut, SubjectIn, SubjectOut
from emwatch.geo.geojson import ZoneError, zone_to_feature, zones_from_geojson
from emwatch.store import repo
from emwatch.store.registry_source import zone_feature_from_row, zone_row

router = APIRouter(prefix="/api")
Svc = Annotated[Services, Depends(services)]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0)]


async def _create(svc: Services, table: str, values: dict[str, Any]) -> dict[str, Any]:
    try:
        return await repo.insert_row(svc.pool, table, values)
    except repo.Conflict as exc:
        raise HTTPException(409, str(exc)) from exc
    except repo.NotFound as exc:
        raise HTTPException(422, f"unknown reference: {exc}") from exc


async def _get(svc: Services, table: str, row_id: str) -> dict[str, Any]:
    try:
        return await repo.get_row(svc.pool, table, row_id)
    except repo.NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


@router.post("/jurisdictions", status_code=201, response_model=JurisdictionOut)
async def create_jurisdiction(body: JurisdictionIn, svc: Svc) -> dict[str, Any]:
    return await _create(svc, "jurisdictions", body.model_dump())


@router.get("/jurisdictions", response_model=list[JurisdictionOut])
async def list_jurisdictions(svc: Svc, limit: Limit = 1000, offset: Offset = 0) -> list[dict[str, Any]]:
    return await repo.list_rows(svc.pool, "jurisdictions", limit, offset)


@router.post("/subjects", status_code=201, response_model=SubjectOut)
async def create_subject(body: SubjectIn, svc: Svc) -> dict[str, Any]:
    return await _create(svc, "subjects", body.model_dump())


@router.get("/subjects", response_model=list[SubjectOut])
async def list_subjects(svc: Svc, limit: Limit = 1000, offset: Offset = 0) -> list[dict[str, Any]]:
    return await repo.list_rows(svc.pool, "subjects", limit, offset)


@router.get("/subjects/{subject_id}", response_model=SubjectOut)
async def get_subject(subject_id: str, svc: Svc) -> dict[str, Any]:
    return await _get(svc, "subjects", subject_id)


@router.post("/devices", status_code=201, response_model=DeviceOut)
async def create_device(body: DeviceIn, svc: Svc) -> dict[str, Any]:
    return await _create(svc, "devices", body.model_dump())


@router.get("/devices", response_model=list[DeviceOut])
async def list_devices(svc: Svc, limit: Limit = 1000, offset: Offset = 0) -> list[dict[str, Any]]:
    return await repo.list_rows(svc.pool, "devices", limit, offset)


@router.get("/devices/{device_id}", response_model=DeviceOut)
async def get_device(device_id: str, svc: Svc) -> dict[str, Any]:
    return await _get(svc, "devices", device_id)


@router.post("/zones", status_code=201)
async def create_zones(svc: Svc, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Store a GeoJSON Feature or FeatureCollection of zones (see geofences/README.md)."""
    try:
        zones = zones_from_geojson(body)
    except ZoneError as exc:
        raise HTTPException(422, f"invalid zone: {exc}") from exc
    try:
        await repo.insert_zones(svc.pool, [zone_row(z) for z in zones])
    except repo.Conflict as exc:
        raise HTTPException(409, str(exc)) from exc
    except repo.NotFound as exc:
        raise HTTPException(422, f"unknown reference: {exc}") from exc
    return {"type": "FeatureCollection", "features": [zone_to_feature(z) for z in zones]}


@router.get("/zones")
async def list_zones(svc: Svc, limit: Limit = 1000, offset: Offset = 0) -> dict[str, Any]:
    rows = await repo.list_rows(svc.pool, "zones", limit, offset)
    return {"type": "FeatureCollection", "features": [zone_feature_from_row(r) for r in rows]}


@router.get("/zones/{zone_id}")
async def get_zone(zone_id: str, svc: Svc) -> dict[str, Any]:
    return zone_feature_from_row(await _get(svc, "zones", zone_id))
