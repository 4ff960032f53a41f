"""Brute-force lockouts on login (per username, per address) and the per-address API token bucket.

A service of its own with small limits and a clock that moves only when a test moves it; each test
speaks from its own loopback address (127.0.0.x), so address counters never mix.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Service, running_service

PASSWORD = "password-123"
LIMITS = {"login_max_failures": 3, "login_ip_max_failures": 6, "login_lockout_s": 10.0,
          "login_lockout_max_s": 40.0, "login_failure_window_s": 900.0, "api_rate_per_s": 1.0,
          "api_burst": 40}


class StoppedClock:
    """Stands still until a test moves it: lockouts and bucket refills happen only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
async def limited(database_factory: Any, mqtt_url: str) -> AsyncIterator[tuple[Service, StoppedClock]]:
    clock = StoppedClock()
    async with running_service(await database_factory(), mqtt_url, clock, **LIMITS) as (service, _):
        yield service, clock


def client_from(service: Service, address: str) -> httpx.AsyncClient:
    """An anonymous client whose connections come from `address` (any 127.x.y.z reaches loopback)."""
    return httpx.AsyncClient(base_url=service.base_url, timeout=10,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def _user(service: Service) -> str:
    name = f"rl-{secrets.token_hex(3)}"
    r = await service.http.post("/api/users", json={"username": name, "password": PASSWORD, "role": "admin"})
    assert r.status_code == 201, r.text
    return name


async def _login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"username": name, "password": password})


async def test_failed_logins_lock_the_username_out_exponentially(
    limited: tuple[Service, StoppedClock],
) -> None:
    service, clock = limited
    name = await _user(service)
    async with client_from(service, "127.0.0.11") as a, client_from(service, "127.0.0.12") as b:
        for _ in range(2):
            assert (await _login(a, name, "wrong")).status_code == 401
        cases = [  # each row: one more wrong password, then the lockout it starts (capped at 40 s)
            10, 20, 40, 40,
        ]
        for lockout in cases:
            assert (await _login(a, name, "wrong")).status_code == 401
            for client in (a, b):  # the username is locked from every address, even with the right password
                r = await _login(client, name, PASSWORD)
                assert r.status_code == 429, r.text
                assert r.headers["retry-after"] == str(lockout)
            clock.now += lockout
        assert (await _login(b, name, PASSWORD)).status_code == 200
        assert (await _login(b, name, "wrong")).status_code == 401  # success cleared the count: no lockout yet

    rows = (await service.http.get("/api/audit", params={"actor": name, "action": "login"})).json()
    denied = [row["detail"] for row in rows if row["outcome"] == "denied"]
    assert sum(d.get("reason") == "locked out" for d in denied) == 2 * len(cases)
    assert sorted(d["locked_for_s"] for d in denied if "locked_for_s" in d) == sorted(cases)
    assert {row["remote_addr"] for row in rows} == {"127.0.0.11", "127.0.0.12"}


async def test_failed_logins_from_one_address_lock_that_address_out(limited: tuple[Service, StoppedClock]) -> None:
    service, clock = limited
    name = await _user(service)
    async with client_from(service, "127.0.0.21") as attacker, client_from(service, "127.0.0.22") as office:
        for i in range(LIMITS["login_ip_max_failures"]):  # one try per name: no username reaches its limit
            assert (await _login(attacker, f"guess-{i}", "wrong")).status_code == 401
        r = await _login(attacker, name, PASSWORD)
        assert (r.status_code, r.headers["retry-after"]) == (429, "10")
        assert (await _login(office, name, PASSWORD)).status_code == 200  # other addresses are not affected
        clock.now += 10
        assert (await _login(attacker, name, PASSWORD)).status_code == 200


async def test_api_requests_beyond_the_bucket_are_refused_until_it_refills(
    limited: tuple[Service, StoppedClock],
) -> None:
    service, clock = limited
    burst = LIMITS["api_burst"]
    async with client_from(service, "127.0.0.31") as client, client_from(service, "127.0.0.32") as other:
        statuses = [(await client.get("/api/config")).status_code for _ in range(burst)]
        assert statuses == [200] * burst
        r = await client.get("/api/config")
        assert (r.status_code, r.headers["retry-after"], r.json()) == (429, "1", {"detail": "rate limit exceeded"})
        assert r.headers["x-content-type-options"] == "nosniff"  # refusals carry the security headers too
        assert (await other.get("/api/config")).status_code == 200  # buckets are per address
        assert (await client.get("/healthz")).status_code == 200  # only /api is limited
        clock.now += 1 / LIMITS["api_rate_per_s"]
        assert (await client.get("/api/config")).status_code == 200
        assert (await client.get("/api/config")).status_code == 429
