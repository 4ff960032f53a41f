"""Optional TOTP second factor: enrol, confirm with a code, then every login needs a fresh code."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pyotp
from cryptography.fernet import Fernet
from pydantic import SecretStr

from emwatch.api.totp_seal import SEALED_PREFIX, TotpSealer
from tests.api.conftest import PASSWORD, World


async def _new_user(world: World) -> tuple[str, httpx.AsyncClient]:
    """A fresh operator and a client logged in as them (closed by the caller)."""
    name = f"{world.tag}-mfa-{secrets.token_hex(3)}"
    r = await world.service.http.post("/api/users", json={"username": name, "password": PASSWORD,
                                                          "role": "operator", "jurisdiction_id": world.j("o1")})
    assert r.status_code == 201, r.text
    tokens = await world.service.login(name, PASSWORD)
    client = httpx.AsyncClient(base_url=world.service.base_url, timeout=10,
                               headers={"Authorization": f"Bearer {tokens['access_token']}"})
    return name, client


async def _login(world: World, name: str, totp: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"username": name, "password": PASSWORD}
    if totp is not None:
        body["totp"] = totp
    async with httpx.AsyncClient(base_url=world.service.base_url, timeout=10) as anonymous:
        return await anonymous.post("/api/auth/login", json=body)


async def _enrolled(world: World) -> tuple[str, httpx.AsyncClient, pyotp.TOTP, str]:
    """A user with TOTP enabled; returns the code that confirmed it too."""
    name, client = await _new_user(world)
    enrolment = (await client.post("/api/auth/totp/enroll")).json()
    totp = pyotp.TOTP(enrolment["secret"])
    code = totp.at(world.clock())
    r = await client.post("/api/auth/totp/confirm", json={"code": code})
    assert r.status_code == 200 and r.json() == {"totp_enabled": True}, r.text
    return name, client, totp, code


async def test_enrolment_returns_a_secret_and_an_otpauth_uri_but_enforces_nothing_until_confirmed(
    world: World,
) -> None:
    name, client = await _new_user(world)
    async with client:
        r = await client.post("/api/auth/totp/enroll")
        assert r.status_code == 200, r.text
        secret, uri = r.json()["secret"], r.json()["otpauth_uri"]
        assert pyotp.parse_uri(uri).secret == secret
        assert uri.startswith("otpauth://totp/") and "issuer=emwatch" in uri
        assert (await _login(world, name)).status_code == 200  # pending: password alone still works

        wrong = next(c for c in ("123456", "654321") if not pyotp.TOTP(secret).verify(c, valid_window=1))
        r = await client.post("/api/auth/totp/confirm", json={"code": wrong})
        assert r.status_code == 422
        assert (await _login(world, name)).status_code == 200  # a wrong code enabled nothing


async def test_once_enabled_login_needs_a_fresh_valid_code(world: World) -> None:
    name, client, totp, confirm_code = await _enrolled(world)
    await client.aclose()
    now = world.clock()
    wrong = next(c for c in ("123456", "654321", "000001") if not totp.verify(c, for_time=now, valid_window=1))
    cases = [  # (code sent, status, detail)
        (None, 401, "totp code required"),
        (wrong, 401, "wrong or reused totp code"),
        (confirm_code, 401, "wrong or reused totp code"),  # a code works once
        (totp.at(now, counter_offset=1), 200, None),  # the next step: a phone slightly ahead
        (totp.at(now, counter_offset=1), 401, "wrong or reused totp code"),  # replayed
    ]
    for code, status, detail in cases:
        r = await _login(world, name, code)
        assert r.status_code == status, (code, r.text)
        if detail is not None:
            assert r.json()["detail"] == detail
        else:
            assert r.json()["access_token"]

    rows = (await world.service.http.get("/api/audit", params={"actor": name, "action": "login"})).json()
    reasons = [row["detail"].get("reason") for row in reversed(rows) if row["outcome"] == "denied"]
    assert reasons == ["totp code required", *["wrong or reused totp code"] * 3]


async def test_enabled_factor_cannot_be_replaced_by_the_user_but_an_admin_can_reset_it(world: World) -> None:
    name, client, _, _ = await _enrolled(world)
    try:
        assert (await client.post("/api/auth/totp/enroll")).status_code == 409  # a stolen session can't swap it
        assert (await client.delete(f"/api/users/{name}/totp")).status_code == 403
    finally:
        await client.aclose()
    assert (await _login(world, name)).status_code == 401

    assert (await world.service.http.delete(f"/api/users/{name}/totp")).status_code == 204
    assert (await _login(world, name)).status_code == 200
    rows = (await world.service.http.get("/api/audit", params={"target_id": name, "target_type": "user"})).json()
    assert {"totp.enroll", "totp.confirm", "totp.reset"} <= {row["action"] for row in rows}


async def test_secrets_are_stored_sealed_and_an_unsealed_one_is_sealed_at_its_next_good_login(
    world: World,
) -> None:
    name, client, totp, _ = await _enrolled(world)
    await client.aclose()
    stored = await world.svc.pool.fetchval("SELECT totp_secret FROM users WHERE username = $1", name)
    assert stored.startswith(SEALED_PREFIX) and totp.secret not in stored

    # a secret stored before sealing was configured: still accepted, and sealed once a code proves it
    await world.svc.pool.execute("UPDATE users SET totp_secret = $2 WHERE username = $1", name, totp.secret)
    r = await _login(world, name, totp.at(world.clock(), counter_offset=1))
    assert r.status_code == 200, r.text
    stored = await world.svc.pool.fetchval("SELECT totp_secret FROM users WHERE username = $1", name)
    assert stored.startswith(SEALED_PREFIX) and world.svc.totp.open(stored) == totp.secret


async def test_a_secret_sealed_with_an_unknown_key_is_a_503_that_names_the_setting(world: World) -> None:
    name, client, totp, _ = await _enrolled(world)
    await client.aclose()
    foreign = TotpSealer(SecretStr(Fernet.generate_key().decode())).seal(totp.secret)
    await world.svc.pool.execute("UPDATE users SET totp_secret = $2 WHERE username = $1", name, foreign)
    r = await _login(world, name, totp.at(world.clock(), counter_offset=1))
    assert r.status_code == 503
    assert "EMWATCH_TOTP_KEYS" in r.json()["detail"]
