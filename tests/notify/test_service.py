"""The running service: an officer subscribes over the API and a breach reaches their browser, decrypted."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.conftest import OUTSIDE, running_service
from tests.notify.conftest import LOOPBACK_SETTINGS, Clock, PushService


async def test_officer_subscribes_and_a_breach_is_pushed(
    fresh_database_url: str, mqtt_url: str, push_service: PushService,
) -> None:
    async with running_service(fresh_database_url, mqtt_url, notify_poll_s=0.1, **LOOPBACK_SETTINGS) as (svc, _):
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

            metrics = (await svc.http.get("/metrics")).text  # delivery counted per channel and outcome
            assert 'emwatch_notifications_total{channel="webpush",outcome="delivered"}' in metrics

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


@pytest.mark.parametrize("acknowledged", [False, True])
async def test_unacknowledged_breach_reaches_the_office_head_in_the_running_service(
    fresh_database_url: str, mqtt_url: str, push_service: PushService, acknowledged: bool,
) -> None:
    """The whole chain on the service's own clock: the escalation loop, the feed numbering the
    `escalated` event, the sender's sweep and a push to the head; or, acknowledged in time, nothing."""
    clock = Clock()
    async with running_service(
        fresh_database_url, mqtt_url, clock, notify_poll_s=0.1, escalation_check_s=0.1,
        escalate_after_min={"critical": 5.0}, **LOOPBACK_SETTINGS,
    ) as (svc, _):
        r = await svc.http.post("/api/jurisdictions", json={"id": "j-office", "name": "Office", "kind": "office"})
        assert r.status_code == 201, r.text
        r = await svc.http.post("/api/jurisdictions", json={"id": "j-test", "name": "Test", "kind": "district",
                                                            "parent_id": "j-office"})
        assert r.status_code == 201, r.text
        subject, device = await svc.add_subject()
        officer = await svc.add_user("officer-zhou", "officer")
        head = await svc.add_user("head-qian", "supervisor", "j-office")
        try:
            assert (await svc.http.post(f"/api/subjects/{subject}/officers", json={"officer": "officer-zhou"})).status_code == 201
            browser, endpoint = push_service.browser()
            r = await head.post("/api/push/subscriptions", json={"endpoint": endpoint, "keys": browser.keys()})
            assert r.status_code == 201, r.text
            await svc.publish_fix(device, *OUTSIDE, ts=int(clock() * 1000))
            await svc.drain()
            [alert] = (await officer.get("/api/alerts", params={"subject_id": subject})).json()
            if acknowledged:
                assert (await officer.post(f"/api/alerts/{alert['id']}/ack")).status_code == 200
            clock.advance(6 * 60)
            deadline = time.monotonic() + 5  # a few dozen escalation and sender rounds
            while not push_service.accepted and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await officer.aclose()
            await head.aclose()
    heard = [(m["type"], m["id"], m["escalated_to"]) for _, m in push_service.accepted]
    assert heard == ([] if acknowledged else [("escalated", alert["id"], "j-office")])
