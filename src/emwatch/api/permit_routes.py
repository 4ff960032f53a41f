"""Leave permits (外出请假) over HTTP: request, approve, revoke, list — scoped and audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime, Field

from emwatch.api.auth import Principal, Svc, User, Writer, audit, denied
from emwatch.api.deps import Services
from emwatch.api.schemas import Ident, Strict
from emwatch.store import permits, repo, scoped

router = APIRouter(prefix="/api")


class PermitIn(Strict):
    subject_id: Ident
    # JSON has no datetime type: ISO 8601 strings are parsed (with a zone, or 422).
    starts_at: Annotated[AwareDatetime, Field(strict=False)]
    ends_at: Annotated[AwareDatetime, Field(strict=False)]
    zone_ids: list[Ident] = Field(min_length=1, max_length=16, description="permit_destination zones")
    grace_s: int = Field(3600, ge=0, le=7 * 86_400, description="time to get back before permit_overdue")
    reason: str = Field("", max_length=1000)


class PermitOut(Strict):
    id: int
    subject_id: str
    starts_at: datetime
    ends_at: datetime
    grace_s: int
    zone_ids: list[str]
    reason: str
    status: str
    requested_by: str
    approved_by: str | None
    approved_at: datetime | None
    revoked_by: str | None
    revoked_at: datetime | None
    created_at: datetime


async def _visible_subject(svc: Services, user: Principal, subject_id: str, action: str) -> dict[str, Any]:
    try:
        return await scoped.get_subject(svc.pool, user.scope, subject_id)
    except repo.NotFound:
        raise await denied(svc, user, action, "subject", subject_id) from None


async def _decide(svc: Services, user: Principal, permit_id: int, action: str) -> dict[str, Any]:
    try:
        permit = await permits.get(svc.pool, permit_id)
    except repo.NotFound:
        raise HTTPException(404, f"no permit {permit_id}") from None
    subject = await _visible_subject(svc, user, permit["subject_id"], f"permit.{action}")
    if not user.manages(subject["jurisdiction_id"]):
        raise await denied(svc, user, f"permit.{action}", "permit", permit_id, 403, "outside your scope")
    try:
        decided = await permits.decide(svc.pool, permit_id, action, user.username)
    except repo.Conflict as exc:
        raise HTTPException(409, str(exc)) from exc
    await audit(svc, user, f"permit.{action}", "permit", permit_id, subject_id=permit["subject_id"])
    return decided


@router.post("/permits", status_code=201, response_model=PermitOut)
async def request_permit(body: PermitIn, svc: Svc, user: Writer) -> dict[str, Any]:
    """Record a permit request; it takes effect once approved."""
    if body.ends_at <= body.starts_at:
        raise HTTPException(422, "ends_at must be after starts_at")
    subject = await _visible_subject(svc, user, body.subject_id, "permit.request")
    if not user.manages(subject["jurisdiction_id"]):
        raise await denied(svc, user, "permit.request", "subject", body.subject_id, 403, "outside your scope")
    try:
        created = await permits.create(
            svc.pool, body.subject_id, body.starts_at, body.ends_at, body.grace_s, body.zone_ids, body.reason,
            user.username,
        )
    except repo.NotFound as exc:
        raise HTTPException(422, f"unknown reference: {exc}") from exc
    except repo.Conflict as exc:
        raise HTTPException(422, str(exc)) from exc
    await audit(svc, user, "permit.request", "permit", created["id"], subject_id=body.subject_id)
    return created


@router.post("/permits/{permit_id}/approve", response_model=PermitOut)
async def approve_permit(permit_id: int, svc: Svc, user: Writer) -> dict[str, Any]:
    return await _decide(svc, user, permit_id, "approve")


@router.post("/permits/{permit_id}/revoke", response_model=PermitOut)
async def revoke_permit(permit_id: int, svc: Svc, user: Writer) -> dict[str, Any]:
    return await _decide(svc, user, permit_id, "revoke")


@router.get("/permits", response_model=list[PermitOut])
async def list_permits(
    svc: Svc, user: User, subject_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[dict[str, Any]]:
    if subject_id is not None:
        await _visible_subject(svc, user, subject_id, "permit.read")
        return await permits.list_for(svc.pool, [subject_id], limit)
    if user.scope.everything:
        return await permits.list_for(svc.pool, None, limit)
    visible = [s["id"] for s in await scoped.list_subjects(svc.pool, user.scope, 100_000, 0)]
    return await permits.list_for(svc.pool, visible, limit)
