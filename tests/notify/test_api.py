"""Preferences and webhooks over the API, the destination guard on what users register, and routing
that follows what was set. One running service with production rules except one allowed network:
https only, and loopback allowed (so nothing registered here could point off this machine)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from emwatch.server_process import free_port
from tests.conftest import DatabaseFactory
from tests.e2e.conftest import Service, running_service
from tests.notify.conftest import Browser, alert, commit_alert

# The sender polls hourly: it runs once at start, so routing decisions stay as written and nothing is sent.
HTTPS_LOOPBACK = {"notify_allow_http": False, "notify_allowed_networks": ["127.0.0.0/8"], "notify_poll_s": 3600}
DEFAULTS = {"min_severity": "warning", "channels": ["webpush", "mqtt"], "quiet_start": None, "quiet_end": None,
            "timezone": "Asia/Shanghai"}


@pytest.fixture(scope="module")
async def api(database_factory: DatabaseFactory, mqtt_url: str) -> AsyncIterator[Service]:
    async with running_service(await database_factory(), mqtt_url, **HTTPS_LOOPBACK) as (svc, _):
        await svc.ensure_jurisdiction()
        yield svc


@pytest.fixture
async def officer(api: Service) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    name = f"officer-{secrets.token_hex(3)}"
    client = await api.add_user(name, "officer")
    yield name, client
    await client.aclose()


def pool_of(api: Service) -> asyncpg.Pool:
    pool: asyncpg.Pool = api.pipeline.pool
    return pool


async def test_officer_sets_and_reads_their_own_preferences(officer: tuple[str, httpx.AsyncClient]) -> None:
    name, client = officer
    r = await client.get("/api/notify/preferences")
    assert r.status_code == 200 and {k: r.json()[k] for k in DEFAULTS} == DEFAULTS  # nothing set yet
    wanted = {"min_severity": "serious", "channels": ["mqtt"], "quiet_start": "22:00:00", "quiet_end": "07:00:00",
              "timezone": "Europe/Berlin"}
    r = await client.put("/api/notify/preferences", json=wanted)
    assert r.status_code == 200, r.text
    r = await client.get("/api/notify/preferences")
    assert {k: r.json()[k] for k in wanted} == wanted and r.json()["username"] == name
    assert r.json()["updated_by"] == name


@pytest.mark.parametrize(("body", "reason"), [
    ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"timezone": "../../etc/passwd"}, "unknown time zone"),
    ({"quiet_start": "22:00"}, "quiet hours need both quiet_start and quiet_end"),
    ({"quiet_start": "22:00", "quiet_end": "22:00"}, "quiet_start and quiet_end must differ"),
    ({"channels": ["webhook"]}, "Input should be 'webpush' or 'mqtt'"),
    ({"channels": ["mqtt", "mqtt"]}, "channels must not repeat"),
    ({"min_severity": "info"}, "Input should be 'critical', 'serious' or 'warning'"),
    ({"quiet_start": "25:00", "quiet_end": "07:00"}, "Input should be in a valid time format"),
    ({"mute": True}, "Extra inputs are not permitted"),
])
async def test_bad_preferences_are_refused_with_the_reason(
    officer: tuple[str, httpx.AsyncClient], body: dict[str, Any], reason: str,
) -> None:
    _, client = officer
    r = await client.put("/api/notify/preferences", json=body)
    assert r.status_code == 422 and reason in r.text, r.text
    assert {k: (await client.get("/api/notify/preferences")).json()[k] for k in DEFAULTS} == DEFAULTS


async def test_only_admins_set_someone_elses_preferences(api: Service, officer: tuple[str, httpx.AsyncClient]) -> None:
    name, client = officer
    r = await client.put("/api/notify/preferences/admin", json={"channels": []})
    assert r.status_code == 403
    r = await api.http.put(f"/api/notify/preferences/{name}", json={"min_severity": "critical"})
    assert r.status_code == 200 and r.json()["updated_by"] == "admin"
    assert (await client.get("/api/notify/preferences")).json()["min_severity"] == "critical"
    assert (await api.http.get("/api/notify/preferences/nobody-such")).status_code == 404


@pytest.mark.parametrize(("endpoint", "reason"), [
    ("http://127.0.0.1:9/push/x", "scheme must be https, not 'http'"),
    ("https://10.1.2.3/push/x", "10.1.2.3 is a private, loopback, link-local or reserved address"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is a private"),
    ("https://[::1]:9/push/x", "::1 is a private"),  # only 127.0.0.0/8 is allowed here
])
async def test_push_endpoint_pointing_inside_is_refused(
    officer: tuple[str, httpx.AsyncClient], endpoint: str, reason: str,
) -> None:
    _, client = officer
    r = await client.post("/api/push/subscriptions", json={"endpoint": endpoint, "keys": Browser("t").keys()})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("push endpoint refused: ") and reason in r.json()["detail"]


async def test_admin_registers_a_webhook_and_gets_its_secret_once(
    api: Service, officer: tuple[str, httpx.AsyncClient],
) -> None:
    url = f"https://127.0.0.1:{free_port()}/hook"  # loopback is this service's one allowed network
    r = await api.http.post("/api/notify/webhooks", json={"url": url, "jurisdiction_id": "j-test"})
    assert r.status_code == 201, r.text
    hook = r.json()
    assert len(hook["secret"]) >= 32 and hook["created_by"] == "admin" and hook["min_severity"] == "warning"
    listed = (await api.http.get("/api/notify/webhooks")).json()
    assert [h for h in listed if h["id"] == hook["id"]] == [{k: v for k, v in hook.items() if k != "secret"}]
    assert all("secret" not in h for h in listed)
    _, client = officer
    assert (await client.post("/api/notify/webhooks", json={"url": url})).status_code == 403
    assert (await client.get("/api/notify/webhooks")).status_code == 403
    assert (await api.http.delete(f"/api/notify/webhooks/{hook['id']}")).status_code == 204
    assert (await api.http.delete(f"/api/notify/webhooks/{hook['id']}")).status_code == 404


@pytest.mark.parametrize(("body", "reason"), [
    ({"url": "http://127.0.0.1:9/hook"}, "webhook url refused: scheme must be https, not 'http'"),
    ({"url": "https://192.168.1.20/hook"}, "webhook url refused: 192.168.1.20 is a private"),
    ({"url": "https://127.0.0.1/hook", "secret": "short"}, "at least 16 characters"),
    ({"url": "https://127.0.0.1/hook", "jurisdiction_id": "j-nowhere"}, "unknown jurisdiction 'j-nowhere'"),
    ({"url": "https://127.0.0.1/ho ok"}, "String should match pattern"),
])
async def test_bad_webhooks_are_refused_with_the_reason(api: Service, body: dict[str, Any], reason: str) -> None:
    r = await api.http.post("/api/notify/webhooks", json=body)
    assert r.status_code == 422 and reason in r.text, r.text


async def test_routing_follows_what_was_set_over_the_api(api: Service, officer: tuple[str, httpx.AsyncClient]) -> None:
    """Severity floor, channel choice and quiet hours in the officer's own zone; critical is never held."""
    name, client = officer
    subject, _ = await api.add_subject()
    assert (await api.http.post(f"/api/subjects/{subject}/officers", json={"officer": name})).status_code == 201
    r = await client.post("/api/push/subscriptions",
                          json={"endpoint": "https://127.0.0.1:9/push/never", "keys": Browser("t").keys()})
    assert r.status_code == 201, r.text
    zone = ZoneInfo("America/New_York")
    local = datetime.now(zone).replace(second=0, microsecond=0)
    quiet_end = local + timedelta(hours=2)  # quiet now, whatever the hour
    prefs = {"min_severity": "serious", "channels": ["mqtt"], "quiet_start": (local - timedelta(hours=1)).time().isoformat(),
             "quiet_end": quiet_end.time().isoformat(), "timezone": "America/New_York"}
    assert (await client.put("/api/notify/preferences", json=prefs)).status_code == 200
    r = await api.http.post("/api/notify/webhooks", json={"url": "https://127.0.0.1:9/hook", "min_severity": "critical",
                                                          "jurisdiction_id": "j-test"})
    assert r.status_code == 201
    hook = str(r.json()["id"])

    pool = pool_of(api)
    due: dict[str, list[tuple[str, str, datetime]]] = {}
    for severity in ("warning", "serious", "critical"):
        committed = await commit_alert(pool, alert(severity, subject=subject, jurisdiction="j-test"))
        rows = await pool.fetch("SELECT channel, target, next_attempt_at FROM notifications WHERE alert_id = $1"
                                " AND (username = $2 OR channel = 'webhook') ORDER BY channel", committed.alert_id, name)
        due[severity] = [(r["channel"], r["target"], r["next_attempt_at"]) for r in rows]
    await api.http.delete(f"/api/notify/webhooks/{hook}")
    at_once = datetime.min  # '-infinity' (due at once) reads back as a naive datetime.min
    assert due["warning"] == []  # below the officer's floor and the webhook's
    assert due["serious"] == [("mqtt", "", quiet_end)]  # no webpush: not a chosen channel; held till the quiet hours end
    assert due["critical"] == [("mqtt", "", at_once), ("webhook", hook, at_once)]
