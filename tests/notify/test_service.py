"""The running service: an officer subscribes over the API and a breach reaches their browser, decrypted."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.conftest import OUTSIDE, running_service
from tests.notify.conftest import PushService


async def test_officer_subscribes_and_a_breach_is_pushed(
    fresh_database_url: str, mqtt_url: str, push_service: PushService,
) -> None:
    async with running_service(fresh_database_url, mqtt_url, notify_poll_s=0.1) as (svc, _):
        subject, device = await svc.add_subject()
        officer = await svc.add_user("officer-wang", "officer")
        try:
            r = await svc.http.post(f"/api/subjects/{subject}/officers", json={"officer": "officer-wang"})
            assert r.status_code == 201, r.text
            r = await officer.get("/api/push/vapid-public-key")
            assert r.status_code == 200 and len(r.json()["public_key"]) == 87  # a 65-byte P-256 point
            browser, endpoint = push_service.browser()
            r = await officer.post("/api/push/subscriptions", json={"endpoint": endpoint, "keys": browser.keys()})
            assert r.status_code == 201, r.text

            await svc.publish_fix(device, *OUTSIDE)
            await svc.drain()
            deadline = time.monotonic() + 10
            while not push_service.accepted:
                assert time.monotonic() < deadline, "no push arrived"
                await asyncio.sleep(0.05)
            [(token, message)] = push_service.accepted
            assert token == browser.token
            assert (message["type"], message["rule"], message["subject_id"]) == ("alert", "zone_exit", subject)

            r = await officer.request("DELETE", "/api/push/subscriptions", json={"endpoint": endpoint})
            assert r.status_code == 204
            r = await officer.request("DELETE", "/api/push/subscriptions", json={"endpoint": endpoint})
            assert r.status_code == 404
        finally:
            await officer.aclose()


async def test_subscriptions_need_a_login(fresh_database_url: str, mqtt_url: str) -> None:
    async with running_service(fresh_database_url, mqtt_url) as (svc, _):
        r = await svc.http.post("/api/push/subscriptions", headers={"Authorization": ""},
                                json={"endpoint": "http://127.0.0.1:9/x", "keys": {"p256dh": "A" * 87, "auth": "A" * 22}})
        assert r.status_code == 401
