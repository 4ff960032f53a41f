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
    created_at: datetime


class DeviceIn(Strict):
    id: Ident
    kind: Literal["ankle", "wrist", "phone"]
    subject_id: Ident | None = None


class DeviceOut(DeviceIn):
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


class AckIn(Strict):
    actor: str = Field("operator", min_length=1, max_length=128)
