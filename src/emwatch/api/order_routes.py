"""No-contact orders (禁止接触特定的人) between two subjects over HTTP: create, list, delete — admin only.

Stored in `subject_contact_bans` (one row per unordered pair, `subject_a < subject_b`), which the
registry already reads; its trigger NOTIFYs the pipeline. Victims are linked with
`POST /api/devices` (kind `victim`, `protects_subject_id`), not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from emwatch.api.auth import Admin, Svc, audit
from emwatch.api.schemas import Ident, Strict

router = APIRouter(prefix="/api")
COLUMNS = "subject_a, subject_b, radius_m, min_seconds, created_at"


class ContactBanIn(Strict):
    subject_a: Ident
    subject_b: Ident
    radius_m: float = Field(100.0, gt=0, le=50_000, description="closer than this counts as together")
    min_seconds: float = Field(0.0, ge=0, le=86_400, description="together this long before an alert")


class ContactBanOut(Strict):
    subject_a: str
    subject_b: str
    radius_m: float
    min_seconds: float
    created_at: datetime


def _pair(a: str, b: str) -> tuple[str, str]:
    if a == b:
        raise HTTPException(422, "a subject cannot be banned from contact with itself")
    return (a, b) if a < b else (b, a)


@router.post("/contact-bans", status_code=201, response_model=ContactBanOut)
async def create_contact_ban(body: ContactBanIn, svc: Svc, user: Admin) -> dict[str, Any]:
    """Forbid two subjects to meet; the pair is unordered (409 if it exists already)."""
    a, b = _pair(body.subject_a, body.subject_b)
    try:
        row = await svc.pool.fetchrow(
            "INSERT INTO subject_contact_bans (subject_a, subject_b, radius_m, min_seconds)"
            f" VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}",
            a, b, body.radius_m, body.min_seconds,
        )
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, f"contact ban {a!r} / {b!r} exists already") from None
    except asyncpg.ForeignKeyViolationError as exc:
        raise HTTPException(422, f"unknown reference: {exc.detail or exc}") from None
    assert row is not None
    await audit(svc, user, "contact_ban.create", "subject", a, other_subject=b, radius_m=body.radius_m,
                min_seconds=body.min_seconds)
    return dict(row)


@router.get("/contact-bans", response_model=list[ContactBanOut])
async def list_contact_bans(
    svc: Svc, user: Admin, subject_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    """Every ban, or those naming `subject_id` on either side."""
    rows = await svc.pool.fetch(
        f"SELECT {COLUMNS} FROM subject_contact_bans WHERE $1::text IS NULL OR $1 IN (subject_a, subject_b)"
        " ORDER BY subject_a, subject_b LIMIT $2",
        subject_id, limit,
    )
    return [dict(r) for r in rows]


@router.delete("/contact-bans/{subject_a}/{subject_b}", status_code=204)
async def delete_contact_ban(subject_a: str, subject_b: str, svc: Svc, user: Admin) -> None:
    """Lift a ban (either order of the two subjects)."""
    a, b = _pair(subject_a, subject_b)
    deleted = await svc.pool.fetchval(
        "DELETE FROM subject_contact_bans WHERE subject_a = $1 AND subject_b = $2 RETURNING 1", a, b
    )
    if deleted is None:
        raise HTTPException(404, f"no contact ban {a!r} / {b!r}")
    await audit(svc, user, "contact_ban.delete", "subject", a, other_subject=b)
