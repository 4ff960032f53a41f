"""The command-center page in real headless Chromium: log in, a live alert arrives, acknowledge it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.e2e.conftest import OUTSIDE, Service

CHROMIUM = os.environ.get("EMWATCH_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (.ci/run installs it)")


async def test_operator_sees_a_live_alert_and_acknowledges_it(service: Service) -> None:
    await service.ensure_jurisdiction()
    subject, device = await service.add_subject()
    username, password = f"page-op-{secrets.token_hex(3)}", "page-password-1"
    client = await service.add_user(username, "operator", "j-test", password)
    await client.aclose()

    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        try:
            await page.goto(service.base_url + "/")
            await page.fill("#username", username)
            await page.fill("#password", password)
            await page.click("#login-button")
            await page.wait_for_selector('#feed-state[data-state="live"]')
            assert username in await page.inner_text("#who")

            await service.publish_fix(device, *OUTSIDE)  # over MQTT, like a bracelet
            item = page.locator(f'#alerts li[data-subject-id="{subject}"][data-lifecycle="open"]')
            await item.wait_for()
            assert await item.get_attribute("data-severity") == "critical"
            await item.click()
            await page.wait_for_selector("#detail:not([hidden])")
            await page.click("#ack")
            await page.wait_for_selector("#ack:disabled")  # the alert is no longer open
            await page.select_option("#f-lifecycle", "acknowledged")
            await page.locator(f'#alerts li[data-subject-id="{subject}"][data-lifecycle="acknowledged"]').wait_for()
            assert "acknowledged" in await page.inner_text("#detail-facts")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "page-acknowledged.png"), full_page=True)
        finally:
            await browser.close()
    assert problems == []

    (alert,) = (await service.http.get("/api/alerts", params={"subject_id": subject, "rule": "zone_exit"})).json()
    assert (alert["lifecycle"], alert["acknowledged_by"]) == ("acknowledged", username)
    rows = (await service.http.get("/api/audit", params={"actor": username})).json()
    assert {"login", "alert.acknowledge", "alert.evidence.read", "subject.track.read"} <= {r["action"] for r in rows}
