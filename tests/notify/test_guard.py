"""SSRF: user-supplied push endpoints and webhook URLs may only reach public https hosts, checked again
at send time with a fresh name lookup (DNS rebinding) and without following redirects.

No test sends anything to a non-loopback address: refused URLs are judged before any connection, and the
only names looked up are `localhost` (/etc/hosts) and literal addresses.
"""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp import web

from emwatch.notify.guard import DestinationPolicy, destination_problem
from emwatch.notify.sender import Sender
from emwatch.notify.webhook import WebhookChannel
from emwatch.notify.webpush import WebPushChannel, load_vapid
from emwatch.server_process import free_port
from tests.notify.conftest import LOOPBACK, OFFICER, Clock, PushService, add_subscription, alert, commit_alert

STRICT = DestinationPolicy()
PUBLIC = "93.184.215.14"  # a global unicast address; judged, never contacted


@pytest.mark.parametrize(("url", "policy", "refusal"), [
    (f"https://{PUBLIC}/push/abc", STRICT, None),
    (f"https://{PUBLIC}:8443/hook", STRICT, None),
    (f"http://{PUBLIC}/push/abc", STRICT, "scheme must be https, not 'http'"),
    ("ftp://example.test/x", LOOPBACK, "scheme must be https or http, not 'ftp'"),
    ("https:///nohost", STRICT, "URL has no host"),
    (f"https://user:pw@{PUBLIC}/", STRICT, "URL must not carry credentials"),
    (f"https://{PUBLIC}:99999/", STRICT, "not a valid URL"),
    ("https://127.0.0.1/push", STRICT, "127.0.0.1 is a private, loopback"),
    ("https://10.1.2.3/hook", STRICT, "10.1.2.3 is a private"),
    ("https://169.254.169.254/latest/meta-data", STRICT, "169.254.169.254 is a private"),  # cloud metadata
    ("https://100.64.0.1/", STRICT, "100.64.0.1 is a private"),  # carrier-grade NAT
    ("https://0.0.0.0/", STRICT, "0.0.0.0 is a private"),
    ("https://[::1]/push", STRICT, "::1 is a private"),
    ("https://[fe80::1]/push", STRICT, "fe80::1 is a private"),
    ("https://[::ffff:127.0.0.1]/push", STRICT, "127.0.0.1 is a private"),  # IPv4-mapped loopback
    ("https://224.0.0.1/", STRICT, "224.0.0.1 is a private"),
    ("https://localhost/push", STRICT, "host 'localhost' resolves to 127.0.0.1 is a private"),
    ("https://metadata/computeMetadata", STRICT, "'metadata' is not a fully qualified host name"),
    ("https://127.1/push", STRICT, "'127.1' is not a fully qualified host name"),  # 127.0.0.1 to inet_aton
    ("https://0x7f.1/push", STRICT, "'0x7f.1' is not a fully qualified host name"),
    ("https://push_service.example.test/x", STRICT, "'push_service.example.test' is not a fully qualified"),
    ("http://127.0.0.1:9/push", LOOPBACK, None),  # what the tests' settings allow
    ("http://localhost:9/push", LOOPBACK, None),
    ("https://10.1.2.3/hook", LOOPBACK, "10.1.2.3 is a private"),  # the allow-list is that narrow
])
async def test_destination_is_judged_before_it_is_stored(url: str, policy: DestinationPolicy, refusal: str | None) -> None:
    problem = await destination_problem(url, policy)
    if refusal is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(refusal), problem


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    assert await destination_problem("https://push.invalid/x", STRICT, nxdomain) == (
        "host 'push.invalid' does not resolve (Name or service not known)"
    )


async def test_a_name_rebound_to_loopback_after_registration_is_refused_at_send_time(
    pool: asyncpg.Pool, push_service: PushService, clock: Clock,
) -> None:
    """Registered while the name pointed at a public address; at send time it resolves to loopback."""
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{webpush}')", OFFICER)
    browser, endpoint = push_service.browser()
    rebound = endpoint.replace("127.0.0.1", "localhost")

    async def public_then(host: str, port: int) -> list[str]:  # the name's answer when it was registered
        return [PUBLIC]

    http_but_no_loopback = DestinationPolicy(allow_http=True)
    assert await destination_problem(rebound, http_but_no_loopback, public_then) is None
    await add_subscription(pool, rebound, browser.keys())
    await commit_alert(pool, alert())
    channel = WebPushChannel(pool, load_vapid(None), "mailto:ops@example.test", guard=http_but_no_loopback)
    try:
        assert await Sender(pool, {"webpush": channel}, clock).deliver_due() == 1
    finally:
        await channel.aclose()
    row = await pool.fetchrow("SELECT status, last_error FROM notifications")
    assert row["status"] == "failed"  # for good: it is an attack or a misconfiguration, not an outage
    assert "resolves to 127.0.0.1 is a private, loopback" in row["last_error"]
    assert push_service.requests == 0


async def test_a_literal_private_address_stored_behind_the_apis_back_is_refused_at_send_time(
    pool: asyncpg.Pool, push_service: PushService, clock: Clock,
) -> None:
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{webpush}')", OFFICER)
    browser, endpoint = push_service.browser()
    await add_subscription(pool, endpoint, browser.keys())  # http://127.0.0.1:port/...
    await commit_alert(pool, alert())
    channel = WebPushChannel(pool, load_vapid(None), "mailto:ops@example.test", guard=DestinationPolicy(True))
    try:
        await Sender(pool, {"webpush": channel}, clock).deliver_due()
    finally:
        await channel.aclose()
    assert await pool.fetchval("SELECT status FROM notifications") == "failed"
    assert push_service.requests == 0


@pytest.fixture
async def redirector(push_service: PushService) -> str:
    """A server on loopback that answers every POST with a 307 to the push service."""
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{push_service.origin}{request.path}")

    port = free_port()
    app = web.Application()
    app.router.add_post("/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_redirects_are_not_followed(
    pool: asyncpg.Pool, push_service: PushService, redirector: str, clock: Clock,
) -> None:
    browser, endpoint = push_service.browser()
    await add_subscription(pool, endpoint.replace(push_service.origin, redirector), browser.keys())
    await pool.execute("INSERT INTO webhooks (url, secret) VALUES ($1, 's')", f"{redirector}/hook")
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{webpush}')", OFFICER)
    await commit_alert(pool, alert())
    push = WebPushChannel(pool, load_vapid(None), "mailto:ops@example.test", guard=LOOPBACK)
    hook = WebhookChannel(pool, guard=LOOPBACK)
    try:
        assert await Sender(pool, {"webpush": push, "webhook": hook}, clock).deliver_due() == 2
    finally:
        await push.aclose()
        await hook.aclose()
    rows = await pool.fetch("SELECT channel, status, last_error FROM notifications ORDER BY channel")
    assert [(r["channel"], r["status"]) for r in rows] == [("webhook", "failed"), ("webpush", "failed")]
    assert rows[0]["last_error"] == "webhook answered 307"
    assert "redirects are not followed" in rows[1]["last_error"]
    assert push_service.requests == 0
