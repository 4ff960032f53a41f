"""Create the world's jurisdictions, zones, subjects and devices through the HTTP API (idempotent)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx

from device_sim.orders import Orders
from device_sim.world import World

log = logging.getLogger(__name__)


class SetupError(RuntimeError):
    """The API refused a setup request with something other than 201 or 409."""


async def setup_via_api(
    base_url: str,
    world: World,
    *,
    client: httpx.AsyncClient | None = None,
    concurrency: int = 16,
    wait_healthy_s: float = 30.0,
    credentials: tuple[str, str] | None = None,
    orders: Orders | None = None,
) -> None:
    """POST everything the simulation needs, parents before children; 409 means it already exists.

    `credentials` (user, password) of an admin log the client in first; the API refuses anonymous calls.
    `orders` (curfews, permits, victims' devices, no-contact bans; `orders.build_orders`) follow the world.
    """
    if client is None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as own_client:
            await setup_via_api(
                base_url, world, client=own_client, concurrency=concurrency, wait_healthy_s=wait_healthy_s,
                credentials=credentials, orders=orders,
            )
        return
    await wait_healthy(client, wait_healthy_s)
    if credentials is not None:
        await login(client, *credentials)
    limit = asyncio.Semaphore(concurrency)
    s = world.subjects
    # Jurisdictions one by one: a child's parent must exist first.
    for body in jurisdiction_bodies(world):
        await _post(client, limit, "/api/jurisdictions", body)
    await _post_all(client, limit, "/api/zones", world.geography.shared_zones)
    await _post_all(
        client,
        limit,
        "/api/subjects",
        (
            {
                "id": s.ids[i],
                "name": s.names[i],
                "jurisdiction_id": s.jurisdiction_ids[i],
                "risk_level": s.risk_levels[i],
                "groups": s.groups[i],
            }
            for i in range(len(s))
        ),
    )
    d = world.devices
    await _post_all(
        client,
        limit,
        "/api/devices",
        (
            {"id": d.ids[i], "kind": d.kinds[i], "subject_id": s.ids[d.subject_index[i]]}
            for i in range(len(d))
        ),
    )
    await _post_all(client, limit, "/api/zones", world.own_zones)
    if orders is not None:
        await setup_orders(client, limit, orders)
    log.info(
        "setup done: %d jurisdictions, %d shared zones, %d subjects, %d devices, %d own zones",
        len(world.geography.jurisdictions),
        len(world.geography.shared_zones),
        len(s),
        len(d),
        len(world.own_zones),
    )


async def setup_orders(client: httpx.AsyncClient, limit: asyncio.Semaphore, orders: Orders) -> None:
    """Curfew and permit zones, victims' devices, no-contact bans, then permits (requested and approved)."""
    await _post_all(client, limit, "/api/zones", orders.zones)
    for zone in orders.zones:  # an existing zone must be this one: a curfew moved by another shift is not
        await _same_zone(client, zone)
    await _post_all(client, limit, "/api/devices", orders.victim_devices)
    await _post_all(client, limit, "/api/contact-bans", orders.contact_bans)
    existing = await _get(client, "/api/permits", {"limit": 10_000})
    approved = [p for p in existing if p["status"] == "approved"]
    have = {(p["subject_id"], _ms(p["starts_at"]), _ms(p["ends_at"])) for p in approved}
    for body in orders.permits:
        if (body["subject_id"], _ms(body["starts_at"]), _ms(body["ends_at"])) in have:
            continue
        response = await client.post("/api/permits", json=body)
        if response.status_code != 201:
            raise SetupError(
                f"POST /api/permits {body['subject_id']!r}: HTTP {response.status_code} {response.text[:500]}"
            )
        permit_id = response.json()["id"]
        response = await client.post(f"/api/permits/{permit_id}/approve")
        if response.status_code != 200:
            raise SetupError(f"approve permit {permit_id}: HTTP {response.status_code} {response.text[:500]}")


async def _same_zone(client: httpx.AsyncClient, zone: dict[str, Any]) -> None:
    stored = await _get(client, f"/api/zones/{zone['id']}", {})
    want, got = zone["properties"].get("schedule"), stored["properties"].get("schedule")
    if want != got:
        raise SetupError(
            f"zone {zone['id']!r} exists with schedule {got}, not {want}: a trace replayed again with another"
            " time-of-day shift needs a fresh database"
        )


async def _get(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> Any:
    response = await client.get(path, params=params)
    if response.status_code != 200:
        raise SetupError(f"GET {path}: HTTP {response.status_code} {response.text[:500]}")
    return response.json()


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def jurisdiction_bodies(world: World) -> list[dict[str, Any]]:
    """API bodies for the jurisdictions file, ordered so every parent precedes its children."""
    pending = {f["id"]: f for f in world.geography.jurisdictions}
    ordered: list[dict[str, Any]] = []
    done: set[str | None] = {None}
    while pending:
        ready = [f for f in pending.values() if f["properties"]["parent_id"] in done]
        if not ready:
            raise ValueError(f"jurisdictions with missing parents: {sorted(pending)}")
        for f in ready:
            p = f["properties"]
            ordered.append({"id": f["id"], "name": p["name"], "kind": p["kind"], "parent_id": p["parent_id"]})
            done.add(f["id"])
            del pending[f["id"]]
    return ordered


async def login(client: httpx.AsyncClient, username: str, password: str) -> None:
    """Log in and make every later request of `client` carry the access token."""
    response = await client.post("/api/auth/login", json={"username": username, "password": password})
    if response.status_code != 200:
        raise SetupError(f"login as {username!r}: HTTP {response.status_code} {response.text[:200]}")
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"


async def wait_healthy(client: httpx.AsyncClient, timeout_s: float) -> None:
    """Wait until GET /healthz answers 200, so a service started alongside us has time to boot."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = await client.get("/healthz")
            if response.status_code == 200:
                return
            reason = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            reason = repr(exc)
        if time.monotonic() >= deadline:
            raise SetupError(f"{client.base_url}healthz not healthy after {timeout_s:.0f} s: {reason}")
        await asyncio.sleep(0.5)


async def _post_all(
    client: httpx.AsyncClient, limit: asyncio.Semaphore, path: str, bodies: Iterable[dict[str, Any]]
) -> None:
    try:
        async with asyncio.TaskGroup() as tg:
            for body in bodies:
                tg.create_task(_post(client, limit, path, body))
    except ExceptionGroup as group:
        # Callers want the first refusal, not a group of identical ones.
        raise group.exceptions[0] from None


async def _post(client: httpx.AsyncClient, limit: asyncio.Semaphore, path: str, body: dict[str, Any]) -> None:
    async with limit:
        response = await client.post(path, json=body)
    if response.status_code not in (200, 201, 409):
        what = body.get("id", body.get("subject_a"))
        raise SetupError(f"POST {path} {what!r}: HTTP {response.status_code} {response.text[:500]}")
