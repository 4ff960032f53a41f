"""`emwatch demo`: one user per role in the demo jurisdictions, created through the API as the admin."""

from __future__ import annotations

import asyncio
import secrets

import httpx

# (username, role, jurisdiction) in geofences/demo/jurisdictions.json
DEMO_USERS = [
    ("supervisor", "supervisor", "demo-county"),
    ("operator", "operator", "demo-county"),
    ("officer", "officer", "demo-office-chengguan"),
]


async def create_demo_users(
    base_url: str, admin: tuple[str, str], wait_s: float = 120.0
) -> list[tuple[str, str, str]]:
    """Once the simulator created the demo jurisdictions, create the users; returns (user, password, role).

    Users that exist already keep their password (reported as "(unchanged)").
    """
    created: list[tuple[str, str, str]] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        r = await http.post("/api/auth/login", json={"username": admin[0], "password": admin[1]})
        r.raise_for_status()
        http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        needed = {jur for _, _, jur in DEMO_USERS}
        for _ in range(int(wait_s / 0.5)):
            have = {j["id"] for j in (await http.get("/api/jurisdictions")).json()}
            if needed <= have:
                break
            await asyncio.sleep(0.5)
        for username, role, jurisdiction in DEMO_USERS:
            password = secrets.token_urlsafe(9)
            r = await http.post("/api/users", json={"username": username, "password": password, "role": role,
                                                   "jurisdiction_id": jurisdiction})
            if r.status_code == 409:
                password = "(unchanged)"
            else:
                r.raise_for_status()
            created.append((username, password, role))
    return created
