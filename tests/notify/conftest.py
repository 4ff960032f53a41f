"""A local push service speaking real Web Push, a webhook receiver, and a database with one caseload."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import http_ece
import jwt
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from emwatch.model import AlertEvent
from emwatch.notify import webhook
from emwatch.notify.guard import DestinationPolicy
from emwatch.server_process import free_port
from emwatch.store import writer
from emwatch.store.db import connect_pool, migrate

OFFICER, SUBJECT, JURISDICTION = "officer-li", "s-notify", "j-notify"
# The test servers listen on plain http on loopback, which production refuses: the tests allow exactly that.
LOOPBACK_SETTINGS: dict[str, Any] = {"notify_allow_http": True, "notify_allowed_networks": ["127.0.0.0/8", "::1/128"]}
LOOPBACK = DestinationPolicy.of(True, LOOPBACK_SETTINGS["notify_allowed_networks"])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """The user agent's side of one subscription: its ECDH key pair and auth secret (RFC 8291)."""

    token: str
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    def keys(self) -> dict[str, str]:
        point = self.private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return {"p256dh": b64url(point), "auth": b64url(self.auth)}


@dataclass
class PushService:
    """A push service on 127.0.0.1: checks the VAPID JWT, decrypts aes128gcm, records what it accepted."""

    origin: str
    browsers: dict[str, Browser] = field(default_factory=dict)
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (token, decrypted payload)
    gone: set[str] = field(default_factory=set)  # answered 410
    fail_next: int = 0  # answer 500 this many times first
    hold: asyncio.Event | None = None  # when set, requests wait for it (a delivery in flight)
    requests: int = 0

    def browser(self) -> tuple[Browser, str]:
        """A new subscribing browser and its endpoint URL."""
        b = Browser(secrets.token_hex(8))
        self.browsers[b.token] = b
        return b, f"{self.origin}/push/{b.token}"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        browser = self.browsers.get(request.match_info["token"])
        if browser is None:
            return web.Response(status=404)
        if browser.token in self.gone:
            return web.Response(status=410)
        claims = self._verify_vapid(request.headers.get("Authorization", ""))
        assert claims["aud"] == self.origin and claims["sub"].startswith("mailto:")
        assert request.headers["Content-Encoding"] == "aes128gcm" and int(request.headers["TTL"]) > 0
        body = await request.read()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500)
        plain = http_ece.decrypt(body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm")
        self.accepted.append((browser.token, orjson.loads(plain)))
        return web.Response(status=201)

    @staticmethod
    def _verify_vapid(header: str) -> dict[str, Any]:
        """RFC 8292: `vapid t=<ES256 JWT>, k=<P-256 public key>`; the JWT must verify under k."""
        t, k = re.search(r"t=([^,\s]+)", header), re.search(r"k=([^,\s]+)", header)
        assert header.startswith("vapid ") and t and k, header
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(k.group(1)))
        claims: dict[str, Any] = jwt.decode(t.group(1), public, algorithms=["ES256"], options={"verify_aud": False})
        assert claims["exp"] > time.time()
        return claims


@dataclass
class WebhookReceiver:
    """An agency system on 127.0.0.1 that checks the HMAC and counts each delivery id once."""

    url: str
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    fail_next: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)  # delivery id -> times it arrived intact
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not webhook.verify(self.secret, body, request.headers.get(webhook.SIGNATURE_HEADER, "")):
            return web.Response(status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        delivery = request.headers[webhook.DELIVERY_HEADER]
        self.deliveries[delivery] = self.deliveries.get(delivery, 0) + 1
        self.bodies.append(orjson.loads(body))
        return web.Response(status=204)


@asynccontextmanager
async def serve_push_service() -> AsyncIterator[PushService]:
    """A PushService listening on a free loopback port until the block ends."""
    port = free_port()
    service = PushService(f"http://127.0.0.1:{port}")
    app = web.Application()
    app.router.add_post("/push/{token}", service.handle)
    runner = web.AppRunner(app, handler_cancellation=True)  # a request whose client died stops there
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield service
    finally:
        if service.hold is not None:
            service.hold.set()
        await runner.cleanup()


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    async with serve_push_service() as service:
        yield service


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    port = free_port()
    receiver = WebhookReceiver(f"http://127.0.0.1:{port}/hook")
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database where OFFICER has SUBJECT on their caseload."""
    await migrate(fresh_database_url)
    async with connect_pool(fresh_database_url) as p:
        await p.execute("INSERT INTO jurisdictions (id, name, kind) VALUES ($1, 'Notify', 'district')", JURISDICTION)
        await p.execute("INSERT INTO subjects (id, name, jurisdiction_id) VALUES ($1, 'Test', $2)", SUBJECT, JURISDICTION)
        await p.execute("INSERT INTO users (username, password_hash, role, jurisdiction_id) VALUES ($1, 'x', 'officer', $2)",
                        OFFICER, JURISDICTION)
        await p.execute("INSERT INTO caseload (officer, subject_id, assigned_by) VALUES ($1, $2, 'admin')", OFFICER, SUBJECT)
        yield p


class Clock:
    """A clock the test moves (epoch seconds)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def alert(
    severity: str = "critical", ts_ms: int | None = None, rule: str = "zone_exit",
    subject: str = SUBJECT, jurisdiction: str = JURISDICTION,
) -> AlertEvent:
    """An alert event for SUBJECT (or `subject`)."""
    return AlertEvent(
        type="alert", rule=rule, subject_id=subject, jurisdiction_id=jurisdiction, device_id=None,
        zone_id=f"z-{secrets.token_hex(3)}", ts=ts_ms if ts_ms is not None else int(time.time() * 1000),
        lat=30.3, lon=120.2, severity=severity,
    )


async def commit_alert(pool: asyncpg.Pool, ev: AlertEvent) -> AlertEvent:
    """Store one alert event the way the pipeline does (its notifications in the same transaction)."""
    async with pool.acquire() as conn, conn.transaction():
        [committed] = await writer.write_alert_events(conn, [ev])
    return committed


async def settle_lifecycle_events(pool: asyncpg.Pool) -> None:
    """Give provisional (negative) lifecycle event seqs their feed seqs, in the order they were made,
    as the running service's committer does once the hub published them (store/lifecycle.py)."""
    async with pool.acquire() as conn, conn.transaction():
        for provisional in [r["seq"] for r in await conn.fetch(
            "SELECT seq FROM alert_events WHERE seq < 0 ORDER BY seq DESC"  # -1 was made first
        )]:
            await conn.execute(
                "UPDATE alert_events SET seq = (SELECT max(seq) + 1 FROM alert_events) WHERE seq = $1", provisional
            )


async def add_subscription(pool: asyncpg.Pool, endpoint: str, keys: dict[str, str], user: str = OFFICER) -> int:
    return int(await pool.fetchval(
        "INSERT INTO push_subscriptions (username, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4) RETURNING id",
        user, endpoint, keys["p256dh"], keys["auth"],
    ))


async def statuses(pool: asyncpg.Pool, channel: str) -> list[tuple[str, int]]:
    rows = await pool.fetch("SELECT status, attempts FROM notifications WHERE channel = $1 ORDER BY id", channel)
    return [(r["status"], r["attempts"]) for r in rows]


ClockFn = Callable[[], float]
