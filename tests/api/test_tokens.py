"""Access tokens expire on the service clock; refresh tokens renew them once each; reuse ends the login."""

from __future__ import annotations

import httpx
import pytest
import websockets

from tests.api.conftest import PASSWORD, World


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_access_token_expires_and_refresh_renews_it_once(world: World) -> None:
    http, ttl = world.service.http, world.svc.tokens.access_ttl
    login = await world.service.login(f"{world.tag}-op1", PASSWORD)
    assert (await http.get("/api/auth/me", headers=bearer(login["access_token"]))).status_code == 200
    try:
        world.clock.offset = ttl + 1
        r = await http.get("/api/auth/me", headers=bearer(login["access_token"]))
        assert (r.status_code, r.json()["detail"]) == (401, "token expired")

        r = await http.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
        assert r.status_code == 200, r.text
        renewed = r.json()
        r = await http.get("/api/auth/me", headers=bearer(renewed["access_token"]))
        assert r.status_code == 200 and r.json()["role"] == "operator", r.text

        # The first refresh token was used: using it again looks like theft and ends the whole login.
        r = await http.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
        assert r.status_code == 401
        r = await http.post("/api/auth/refresh", json={"refresh_token": renewed["refresh_token"]})
        assert r.status_code == 401
    finally:
        world.clock.offset = 0


async def test_an_access_token_is_not_a_refresh_token_and_vice_versa(world: World) -> None:
    http = world.service.http
    login = await world.service.login(f"{world.tag}-off1", PASSWORD)
    assert (await http.post("/api/auth/refresh", json={"refresh_token": login["access_token"]})).status_code == 401
    assert (await http.get("/api/auth/me", headers=bearer(login["refresh_token"]))).status_code == 401


async def test_refresh_token_expires_too(world: World) -> None:
    login = await world.service.login(f"{world.tag}-off1", PASSWORD)
    try:
        world.clock.offset = world.svc.tokens.refresh_ttl + 1
        r = await world.service.http.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
        assert r.status_code == 401
    finally:
        world.clock.offset = 0


@pytest.mark.parametrize(("username", "password"), [("op1", "wrong-password"), ("nobody", PASSWORD)])
async def test_bad_login_is_refused_and_audited(world: World, username: str, password: str) -> None:
    name = username if username == "nobody" else f"{world.tag}-{username}"
    async with httpx.AsyncClient(base_url=world.service.base_url) as anonymous:
        r = await anonymous.post("/api/auth/login", json={"username": name, "password": password})
    assert r.status_code == 401
    rows = (await world.service.http.get("/api/audit", params={"actor": name, "action": "login"})).json()
    assert rows[0]["outcome"] == "denied" and rows[0]["remote_addr"] == "127.0.0.1"


async def test_disabled_user_loses_access_at_once(world: World) -> None:
    admin = world.service.http
    r = await admin.post("/api/users", json={"username": f"{world.tag}-leaver", "password": PASSWORD,
                                             "role": "operator", "jurisdiction_id": world.j("o1")})
    assert r.status_code == 201
    login = await world.service.login(f"{world.tag}-leaver", PASSWORD)
    assert (await admin.get("/api/subjects", headers=bearer(login["access_token"]))).status_code == 200
    assert (await admin.patch(f"/api/users/{world.tag}-leaver", json={"disabled": True})).status_code == 200
    assert (await admin.get("/api/subjects", headers=bearer(login["access_token"]))).status_code == 401
    r = await admin.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert r.status_code == 401


async def test_feed_refuses_an_expired_token(world: World) -> None:
    token = world.tokens["op1"]
    protocols = [websockets.Subprotocol("bearer"), websockets.Subprotocol(token)]
    try:
        world.clock.offset = world.svc.tokens.access_ttl + 1
        async with websockets.connect(world.service.ws_url, subprotocols=protocols) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    finally:
        world.clock.offset = 0
