"""Alert severity per jurisdiction over HTTP: defaults, and overrides set or lifted by admins, audited.

An override in a jurisdiction applies to its subjects and to every jurisdiction below it; the nearest
one on a subject's path wins. Stored in `severity_overrides` (migration 010), whose trigger NOTIFYs
the pipeline: alerts raised after the reload carry the new severity (open ones keep theirs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, Query

from emwatch.alerts.severity import SEVERITY
from emwatch.api.auth import Admin, Svc, audit
from emwatch.api.schemas import Ident, Strict
from emwatch.rules.catalog import RULE_CODE

router = APIRouter(prefix="/api")
COLUMNS = "jurisdiction_id, rule, risk_level, severity, updated_by, updated_at"
RiskLevel = Literal["high", "medium", "low"]
Severity = Literal["critical", "serious", "warning"]


class SeverityIn(Strict):
    severity: Severity


class SeverityOverrideOut(Strict):
    jurisdiction_id: str
    rule: str
    risk_level: str
    severity: str
    updated_by: str
    updated_at: datetime


def _known_rule(rule: str) -> None:
    if rule not in RULE_CODE:
        raise HTTPException(422, f"unknown rule {rule!r}; one of {', '.join(RULE_CODE)}")


@router.get("/severity/defaults")
async def severity_defaults(user: Admin) -> dict[str, dict[str, str]]:
    """The built-in severity of every rule by risk level (what applies where nothing overrides it)."""
    return SEVERITY


@router.get("/severity", response_model=list[SeverityOverrideOut])
async def list_severity_overrides(
    svc: Svc, user: Admin, jurisdiction_id: str | None = Query(None, max_length=128)
) -> list[dict[str, Any]]:
    """Every override, or those set on one jurisdiction."""
    rows = await svc.pool.fetch(
        f"SELECT {COLUMNS} FROM severity_overrides WHERE $1::text IS NULL OR jurisdiction_id = $1"
        " ORDER BY jurisdiction_id, rule, risk_level",
        jurisdiction_id,
    )
    return [dict(r) for r in rows]


@router.put("/severity/{jurisdiction_id}/{rule}/{risk_level}", response_model=SeverityOverrideOut)
async def set_severity_override(
    jurisdiction_id: Ident, rule: str, risk_level: RiskLevel, body: SeverityIn, svc: Svc, user: Admin
) -> dict[str, Any]:
    """Set (or replace) the severity of `rule` for `risk_level` subjects in and below a jurisdiction."""
    _known_rule(rule)
    try:
        row = await svc.pool.fetchrow(
            "INSERT INTO severity_overrides (jurisdiction_id, rule, risk_level, severity, updated_by)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (jurisdiction_id, rule, risk_level) DO UPDATE"
            " SET severity = EXCLUDED.severity, updated_by = EXCLUDED.updated_by, updated_at = now()"
            f" RETURNING {COLUMNS}",
            jurisdiction_id, rule, risk_level, body.severity, user.username,
        )
    except asyncpg.ForeignKeyViolationError:
        raise HTTPException(422, f"unknown jurisdiction {jurisdiction_id!r}") from None
    assert row is not None
    await audit(svc, user, "severity.set", "jurisdiction", jurisdiction_id, rule=rule, risk_level=risk_level,
                severity=body.severity)
    return dict(row)


@router.delete("/severity/{jurisdiction_id}/{rule}/{risk_level}", status_code=204)
async def delete_severity_override(
    jurisdiction_id: Ident, rule: str, risk_level: RiskLevel, svc: Svc, user: Admin
) -> None:
    """Lift an override: the parent jurisdiction's (or the default) applies again."""
    _known_rule(rule)
    deleted = await svc.pool.fetchval(
        "DELETE FROM severity_overrides WHERE jurisdiction_id = $1 AND rule = $2 AND risk_level = $3"
        " RETURNING 1",
        jurisdiction_id, rule, risk_level,
    )
    if deleted is None:
        raise HTTPException(404, f"no severity override for {rule!r} / {risk_level!r} in {jurisdiction_id!r}")
    await audit(
        svc, user, "severity.delete", "jurisdiction", jurisdiction_id, rule=rule, risk_level=risk_level
    )
