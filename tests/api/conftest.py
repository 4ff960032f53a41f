"""A service with a movable clock and a small jurisdiction tree, one user per role, and alerts for each subject.

    city c ─┬─ district d1 ─┬─ office o1   subject s1 (alerting)
            │               └─ office o2   subject s2 (alerting; on officer off3's caseload)
            └─ district d2 ─── office o3   subject s3 (alerting)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from emwatch.api.deps import Services
from tests.e2e.conftest import COUNTY, OUTSIDE, Service, _polygon_feature, now_ms, running_service

PASSWORD = "password-123"
TREE = [("c", "city", None), ("d1", "district", "c"), ("o1", "office", "d1"), ("o2", "office", "d1"),
        ("d2", "district", "c"), ("o3", "office", "d2")]
USERS = {  # name: (role, jurisdiction)
    "sup1": ("supervisor", "d1"),
    "op1": ("operator", "o1"),
    "off1": ("officer", "o1"),
    "off3": ("officer", "o3"),
}
ESCALATE_AFTER_MIN = 5.0
TOTP_KEY = Fernet.generate_key().decode()  # TOTP secrets sealed at rest, as in production


class FakeClock:
    """Wall time plus an offset the tests move; the service reads it for token expiry and escalation."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class World:
    service: Service
    svc: Services
    clock: FakeClock
    tag: str
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)  # "admin" is service.http
    tokens: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)  # s1/s2/s3 → real id
    devices: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)  # s1/s2/s3 → zone_exit alert id
    t0: int = 0

    def j(self, short: str) -> str:
        """Real jurisdiction id of c/d1/o1/..."""
        return f"{self.tag}-{short}"

    def client(self, user: str) -> httpx.AsyncClient:
        return self.service.http if user == "admin" else self.clients[user]

    def short(self, subject_ids: object) -> set[str]:
        """Our s1/s2/s3 names for the real subject ids in `subject_ids` (others ignored)."""
        back = {v: k for k, v in self.subjects.items()}
        return {back[s] for s in subject_ids if s in back}  # type: ignore[attr-defined]


async def wait_registered(service: Service, zone_ids: set[str]) -> None:
    """Drain until the pipeline has loaded these zones (it reloads on NOTIFY, which may lag a POST)."""
    for _ in range(100):
        await service.drain()
        engine = service.pipeline.engine
        if engine is not None and zone_ids <= {z.id for z in engine.registry.zones.zones}:
            return
    raise TimeoutError(f"pipeline never loaded {zone_ids}")


async def new_subject(world: World, office: str = "o1") -> tuple[str, str]:
    """A fresh subject in `office` with a bracelet and a home zone; returns (subject, device)."""
    http, tag = world.service.http, f"{world.tag}-{secrets.token_hex(3)}"
    for path, body in (("/api/subjects", {"id": tag, "name": "x", "jurisdiction_id": world.j(office)}),
                       ("/api/devices", {"id": f"{tag}-dev", "kind": "ankle", "subject_id": tag}),
                       ("/api/zones", _polygon_feature(f"{tag}-home", "inclusion", COUNTY, tag))):
        assert (await http.post(path, json=body)).status_code == 201
    await wait_registered(world.service, {f"{tag}-home"})
    return tag, f"{tag}-dev"


async def _post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await http.post(path, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture(scope="session")
async def world(database_factory: Any, mqtt_url: str) -> AsyncIterator[World]:
    clock = FakeClock()
    minutes = {"critical": ESCALATE_AFTER_MIN, "serious": ESCALATE_AFTER_MIN, "warning": ESCALATE_AFTER_MIN}
    async with running_service(await database_factory(), mqtt_url, clock, escalation_check_s=3600.0,
                               escalate_after_min=minutes, totp_keys=SecretStr(TOTP_KEY)) as (service, app):
        w = World(service, app.state.services, clock, f"t{secrets.token_hex(3)}")
        admin = service.http
        for short, kind, parent in TREE:
            await _post(admin, "/api/jurisdictions", {"id": w.j(short), "name": short, "kind": kind,
                                                      "parent_id": parent and w.j(parent)})
        for name, (role, jur) in USERS.items():
            await _post(admin, "/api/users", {"username": f"{w.tag}-{name}", "password": PASSWORD,
                                              "role": role, "jurisdiction_id": w.j(jur)})
            tokens = await service.login(f"{w.tag}-{name}", PASSWORD)
            w.tokens[name] = tokens["access_token"]
            w.clients[name] = httpx.AsyncClient(base_url=service.base_url, timeout=10,
                                                headers={"Authorization": f"Bearer {w.tokens[name]}"})
        w.tokens["admin"] = service.token
        await _post(admin, "/api/zones", {"type": "Feature", "id": f"{w.tag}-city-zone", "geometry": {
            "type": "Polygon", "coordinates": [COUNTY]}, "properties": {"kind": "exclusion",
                                                                       "jurisdiction_id": w.j("c")}})
        far = [[121.0, 31.0], [121.01, 31.0], [121.01, 31.01], [121.0, 31.0]]  # never reached
        await _post(admin, "/api/zones", {"type": "Feature", "id": f"{w.tag}-d2-zone", "geometry": {
            "type": "Polygon", "coordinates": [far]}, "properties": {"kind": "exclusion",
                                                                    "jurisdiction_id": w.j("d2")}})
        for short, office in (("s1", "o1"), ("s2", "o2"), ("s3", "o3")):
            subject, device = f"{w.tag}-{short}", f"{w.tag}-{short}-dev"
            await _post(admin, "/api/subjects", {"id": subject, "name": short, "jurisdiction_id": w.j(office)})
            await _post(admin, "/api/devices", {"id": device, "kind": "ankle", "subject_id": subject})
            await _post(admin, "/api/zones", _polygon_feature(f"{subject}-home", "inclusion", COUNTY, subject))
            w.subjects[short], w.devices[short] = subject, device
        await _post(admin, f"/api/subjects/{w.subjects['s2']}/officers", {"officer": f"{w.tag}-off3"})
        await wait_registered(service, {f"{s}-home" for s in w.subjects.values()})
        w.t0 = now_ms()
        for device in w.devices.values():
            await service.publish_fix(device, *OUTSIDE, ts=w.t0)
        await service.drain()
        r = await admin.get("/api/alerts", params={"rule": "zone_exit", "limit": 100})
        for alert in r.json():
            for short, subject in w.subjects.items():
                if alert["subject_id"] == subject:
                    w.alerts[short] = alert["id"]
        assert set(w.alerts) == {"s1", "s2", "s3"}, r.json()
        try:
            yield w
        finally:
            for c in w.clients.values():
                await c.aclose()
