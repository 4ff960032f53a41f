"""Strict request and response models: unknown fields and lax coercion are 422s."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class JurisdictionIn(Strict):
    id: Ident
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["province", "city", "district", "office"]
    parent_id: Ident | None = None


class JurisdictionOut(JurisdictionIn):
    model_config = ConfigDict(extra="ignore")  # a column added by a later migration must not fail reads

    created_at: datetime


class SubjectIn(Strict):
    id: Ident
    name: str = Field(min_length=1, max_length=200)
    jurisdiction_id: Ident
    risk_level: Literal["high", "medium", "low"] = "medium"
    status: Literal["active", "suspended", "released"] = "active"
    groups: list[Ident] = Field(default_factory=list, max_length=64)
    timezone: str = "Asia/Shanghai"


class SubjectOut(SubjectIn):
    model_config = ConfigDict(extra="ignore")  # a column added by a later migration must not fail reads

    created_at: datetime


class DeviceIn(Strict):
    id: Ident
    kind: Literal["ankle", "wrist", "phone", "victim"]
    subject_id: Ident | None = None
    protects_subject_id: Ident | None = None  # kind "victim" only: the subject kept away from its carrier


class DeviceOut(DeviceIn):
    model_config = ConfigDict(extra="ignore")  # a column added by a later migration must not fail reads

    created_at: datetime


class AlertOut(BaseModel):
    id: int
    rule: str
    subject_id: str
    jurisdiction_id: str
    device_id: str | None
    zone_id: str | None
    severity: str
    status: str
    opened_at: datetime
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    lat: float | None
    lon: float | None
    lifecycle: str = "open"
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution_category: str | None = None
    resolution_note: str | None = None
    escalation_level: int = 0
    escalated_to: str | None = None
    escalated_at: datetime | None = None


class AckIn(Strict):
    actor: str = Field("operator", min_length=1, max_length=128)


Category = Literal["true_violation", "false_alarm", "technical_fault"]
Role = Literal["admin", "supervisor", "operator", "officer"]
Username = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]


class ResolveIn(Strict):
    category: Category
    note: str = Field(min_length=1, max_length=4000)


class BulkIn(Strict):
    ids: list[int] = Field(min_length=1, max_length=1000)
    action: Literal["acknowledge", "resolve"]
    category: Category | None = None
    note: str | None = Field(None, min_length=1, max_length=4000)


class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(None, pattern=r"^[0-9]{6}$", description="Authenticator code, once TOTP is on.")


class TotpCodeIn(Strict):
    code: str = Field(pattern=r"^[0-9]{6}$")


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=4096)


class UserIn(Strict):
    username: Username
    password: str = Field(min_length=8, max_length=1024)
    role: Role
    jurisdiction_id: Ident | None = None
    display_name: str = Field("", max_length=200)


class UserOut(BaseModel):
    username: str
    role: str
    jurisdiction_id: str | None
    display_name: str
    disabled: bool
    created_at: datetime


class UserPatch(Strict):
    password: str | None = Field(None, min_length=8, max_length=1024)
    disabled: bool | None = None


class CaseloadIn(Strict):
    officer: Username
