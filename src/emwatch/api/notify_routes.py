"""Officer notification preferences (their own; an admin's for anyone) and agency webhooks (admins)."""

from __future__ import annotations

import secrets
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from emwatch.api.auth import Admin, Principal, Svc, User, audit
from emwatch.api.deps import Services
from emwatch.notify.guard import destination_problem
from emwatch.notify.service import destination_policy

router = APIRouter(prefix="/api/notify")

Severity = Literal["critical", "serious", "warning"]
PersonChannel = Literal["webpush", "mqtt"]
URL = r"^[!-~]+$"  # printable ASCII, no spaces; the destination guard judges the rest


def _all_person_channels() -> list[PersonChannel]:
    return ["webpush", "mqtt"]


class PreferencesIn(BaseModel):
    """What an officer hears of: alerts at or above `min_severity`, on `channels`; during quiet hours
    (local time in `timezone`, may wrap midnight) all but critical alerts wait until the hours end."""

    model_config = ConfigDict(extra="forbid")

    min_severity: Severity = "warning"
    channels: list[PersonChannel] = Field(default_factory=_all_person_channels, max_length=2)
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name like Asia/Shanghai)") from None
        return value

    @model_validator(mode="after")
    def _quiet_hours(self) -> PreferencesIn:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet hours need both quiet_start and quiet_end (or neither)")
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise ValueError("quiet_start and quiet_end must differ")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self


class WebhookIn(BaseModel):
    """Another agency system that receives the alerts of a jurisdiction subtree (none: all), signed."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(pattern=URL, max_length=2048)]
    secret: Annotated[str | None, Field(min_length=16, max_length=256)] = None  # None: one is generated
    jurisdiction_id: str | None = None
    min_severity: Severity = "warning"


_PREF_COLUMNS = "min_severity, channels, quiet_start, quiet_end, timezone, updated_at, updated_by"
_HOOK_COLUMNS = "id, url, jurisdiction_id, min_severity, enabled, created_at, created_by"


async def _preferences(svc: Services, username: str) -> dict[str, Any]:
    row = await svc.pool.fetchrow(
        f"SELECT {_PREF_COLUMNS} FROM notify_preferences WHERE username = $1", username
    )
    prefs = dict(row) if row else {**PreferencesIn().model_dump(), "updated_at": None, "updated_by": None}
    return {"username": username, **prefs}


async def _store_preferences(
    svc: Services, user: Principal, username: str, body: PreferencesIn
) -> dict[str, Any]:
    await svc.pool.execute(
        "INSERT INTO notify_preferences (username, min_severity, channels, quiet_start, quiet_end, timezone,"
        " updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (username) DO UPDATE SET"
        " min_severity = $2, channels = $3, quiet_start = $4, quiet_end = $5, timezone = $6,"
        " updated_by = $7, updated_at = now()",
        username, body.min_severity, body.channels, body.quiet_start, body.quiet_end, body.timezone,
        user.username,
    )
    await audit(svc, user, "notify.preferences", "user", username, **body.model_dump(mode="json"))
    return await _preferences(svc, username)


async def _must_be_user(svc: Services, username: str) -> None:
    if await svc.pool.fetchval("SELECT 1 FROM users WHERE username = $1", username) is None:
        raise HTTPException(404, f"no user {username!r}")


@router.get("/preferences")
async def my_preferences(svc: Svc, user: User) -> dict[str, Any]:
    """The caller's preferences (the defaults until they set any)."""
    return await _preferences(svc, user.username)


@router.put("/preferences")
async def set_my_preferences(body: PreferencesIn, svc: Svc, user: User) -> dict[str, Any]:
    """Replace the caller's preferences; routing uses them from the next alert on."""
    return await _store_preferences(svc, user, user.username, body)


@router.get("/preferences/{username}")
async def user_preferences(username: str, svc: Svc, user: Admin) -> dict[str, Any]:
    """Another user's preferences (admins)."""
    await _must_be_user(svc, username)
    return await _preferences(svc, username)


@router.put("/preferences/{username}")
async def set_user_preferences(username: str, body: PreferencesIn, svc: Svc, user: Admin) -> dict[str, Any]:
    """Replace another user's preferences (admins)."""
    await _must_be_user(svc, username)
    return await _store_preferences(svc, user, username, body)


@router.post("/webhooks", status_code=201)
async def create_webhook(body: WebhookIn, svc: Svc, user: Admin) -> dict[str, Any]:
    """Register a webhook; the answer carries its HMAC secret, the only time it is shown."""
    if problem := await destination_problem(body.url, destination_policy(svc.settings)):
        await audit(svc, user, "webhook.create", "webhook", None, outcome="denied", url=body.url,
                    reason=problem)
        raise HTTPException(422, f"webhook url refused: {problem}")
    if body.jurisdiction_id is not None and await svc.pool.fetchval(
        "SELECT 1 FROM jurisdictions WHERE id = $1", body.jurisdiction_id
    ) is None:
        raise HTTPException(422, f"unknown jurisdiction {body.jurisdiction_id!r}")
    secret = body.secret or secrets.token_urlsafe(32)
    row = await svc.pool.fetchrow(
        "INSERT INTO webhooks (url, secret, jurisdiction_id, min_severity, created_by)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_HOOK_COLUMNS}",
        body.url, secret, body.jurisdiction_id, body.min_severity, user.username,
    )
    await audit(svc, user, "webhook.create", "webhook", row["id"], url=body.url,
                jurisdiction=body.jurisdiction_id)
    return {**dict(row), "secret": secret}


@router.get("/webhooks")
async def list_webhooks(svc: Svc, user: Admin) -> list[dict[str, Any]]:
    """Every webhook, without secrets."""
    return [dict(r) for r in await svc.pool.fetch(f"SELECT {_HOOK_COLUMNS} FROM webhooks ORDER BY id")]


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: int, svc: Svc, user: Admin) -> Response:
    """Remove a webhook; its notifications still pending fail as `webhook removed`."""
    if await svc.pool.fetchval("DELETE FROM webhooks WHERE id = $1 RETURNING id", webhook_id) is None:
        raise HTTPException(404, f"no webhook {webhook_id}")
    await audit(svc, user, "webhook.delete", "webhook", webhook_id)
    return Response(status_code=204)
