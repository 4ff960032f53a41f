"""Security headers on the page, its assets and the API; the page still works under its CSP."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from emwatch.api.security import content_security_policy
from tests.api.conftest import PASSWORD, World

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
EVERYWHERE = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


@pytest.mark.parametrize(("path", "authenticated", "no_store"), [
    ("/", False, True),  # the page
    ("/static/app.js", False, False),  # its script: cacheable, still nosniff
    ("/static/vendor/leaflet/leaflet.js", False, False),
    ("/api/config", False, True),
    ("/api/alerts", True, True),  # positions and alerts: never cached
    ("/api/alerts", False, True),  # a 401 too
    ("/api/no-such-route", True, True),  # a 404 too
])
async def test_every_response_carries_the_security_headers(
    world: World, path: str, authenticated: bool, no_store: bool
) -> None:
    headers = {} if authenticated else {"Authorization": ""}
    r = await world.service.http.get(path, headers=headers)
    assert {k: r.headers.get(k) for k in EVERYWHERE} == EVERYWHERE
    csp = r.headers["content-security-policy"]
    assert {"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} <= set(csp.split("; "))
    assert (r.headers.get("cache-control") == "no-store") is no_store


@pytest.mark.parametrize(("tile_url", "images"), [
    (None, "img-src 'self' data: blob:"),
    ("https://tiles.example/{z}/{x}/{y}.png", "img-src 'self' data: blob: https://tiles.example"),
    ("https://{s}.tile.example:8443/{z}/{x}/{y}.png", "img-src 'self' data: blob: https://*.tile.example:8443"),
])
def test_the_policy_allows_images_from_the_configured_tile_server_only(tile_url: str | None, images: str) -> None:
    assert images in content_security_policy(tile_url).split("; ")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (.ci/run installs it)")
async def test_the_page_logs_in_and_goes_live_without_policy_violations(world: World) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    name = f"{world.tag}-csp-{secrets.token_hex(3)}"
    r = await world.service.http.post("/api/users", json={"username": name, "password": PASSWORD,
                                                          "role": "operator", "jurisdiction_id": world.j("o1")})
    assert r.status_code == 201, r.text
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page()
        messages: list[str] = []
        errors: list[str] = []
        page.on("console", lambda m: messages.append(m.text))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            await page.goto(world.service.base_url + "/")
            await page.fill("#username", name)
            await page.fill("#password", PASSWORD)
            await page.click("#login-button")
            await page.wait_for_selector('#feed-state[data-state="live"]')  # the WebSocket is 'self' too
            await page.wait_for_selector(".leaflet-container")
        finally:
            await browser.close()
    assert [m for m in messages if "Content Security Policy" in m] == []
    assert errors == []


async def test_a_frame_of_the_page_is_refused_by_header(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.service.base_url) as anonymous:
        r = await anonymous.get("/")
    assert r.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
