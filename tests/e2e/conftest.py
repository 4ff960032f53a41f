"""The whole service running in-process on real Mosquitto and PostgreSQL, and helpers to drive it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiomqtt
import httpx
import orjson
import pytest
import uvicorn
import websockets
from fastapi import FastAPI

from emwatch.api.app import create_app
from emwatch.ingest.mqtt import make_client
from emwatch.pipeline import Pipeline
from emwatch.server_process import free_port
from emwatch.settings import Settings

ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-test-password"

# A 0.02° square around (120.10, 30.30): the county a test subject must stay in.
HOME_LON, HOME_LAT = 120.10, 30.30
COUNTY = [[120.09, 30.29], [120.11, 30.29], [120.11, 30.31], [120.09, 30.31], [120.09, 30.29]]
INSIDE = (120.10, 30.30)
OUTSIDE = (120.20, 30.30)
# How long a test waits for something the service does (a zone loaded, an alert on the feed, a drain, an
# HTTP answer). It is a deadline, not a delay: met in milliseconds on a quiet machine, while a loaded one
# (2 cores shared with benchmarks, a commit queued behind someone's fsync) took more than 10 s at times.
WAIT_S = 60.0


@dataclass
class Service:
    """A running emwatch plus clients for its HTTP API and its broker."""

    base_url: str
    ws_url: str
    mqtt_url: str
    http: httpx.AsyncClient  # authenticated as the bootstrap admin
    mqtt: aiomqtt.Client
    pipeline: Pipeline
    token: str  # the admin's access token, for the WebSocket feed

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """POST /api/auth/login; returns the token response."""
        r = await self.http.post("/api/auth/login", json={"username": username, "password": password},
                                 headers={"Authorization": ""})
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def add_user(self, username: str, role: str, jurisdiction_id: str | None = "j-test",
                       password: str = "password-123") -> httpx.AsyncClient:
        """Create a user (as admin) and return an HTTP client logged in as them; the caller closes it."""
        r = await self.http.post("/api/users", json={"username": username, "password": password, "role": role,
                                                     "jurisdiction_id": jurisdiction_id})
        assert r.status_code == 201, r.text
        tokens = await self.login(username, password)
        return httpx.AsyncClient(base_url=self.base_url, timeout=WAIT_S,
                                 headers={"Authorization": f"Bearer {tokens['access_token']}"})

    async def add_subject(self, *, exclusion: list[list[float]] | None = None) -> tuple[str, str]:
        """A new subject with an ankle bracelet and the COUNTY inclusion zone; returns (subject, device)."""
        tag = secrets.token_hex(4)
        subject, device = f"s-{tag}", f"d-{tag}"
        await self.ensure_jurisdiction()
        r = await self.http.post("/api/subjects", json={"id": subject, "name": "Test", "jurisdiction_id": "j-test"})
        assert r.status_code == 201, r.text
        r = await self.http.post("/api/devices", json={"id": device, "kind": "ankle", "subject_id": subject})
        assert r.status_code == 201, r.text
        features = [_polygon_feature(f"z-{tag}-county", "inclusion", COUNTY, subject)]
        if exclusion:
            features.append(_polygon_feature(f"z-{tag}-victim", "exclusion", exclusion, subject))
        r = await self.http.post("/api/zones", json={"type": "FeatureCollection", "features": features})
        assert r.status_code == 201, r.text
        await self.settled([f["id"] for f in features])
        return subject, device

    async def settled(self, zone_ids: list[str], timeout: float = WAIT_S) -> None:
        """Wait until the pipeline's registry holds these zones. Registry changes travel by NOTIFY and
        apply on the next batch or tick: a fix sent a moment after a zone was created may miss it."""
        deadline = time.monotonic() + timeout
        while True:
            engine = self.pipeline.engine
            if engine is not None and all(z in engine.registry.zones.index_of for z in zone_ids):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"zones {zone_ids} never reached the pipeline")
            await asyncio.sleep(0.02)

    async def ensure_jurisdiction(self) -> None:
        r = await self.http.post("/api/jurisdictions", json={"id": "j-test", "name": "Test", "kind": "district"})
        assert r.status_code in (201, 409), r.text

    async def publish_fix(self, device: str, lon: float, lat: float, ts: int | None = None, **extra: Any) -> int:
        ts = ts if ts is not None else now_ms()
        payload = {"ts": ts, "lat": lat, "lon": lon, "acc": 8.0, **extra}
        await self.mqtt.publish(f"em/v1/devices/{device}/fix", orjson.dumps(payload), qos=1)
        return ts

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        await self.mqtt.publish(topic, payload, qos=1)

    async def drain(self, timeout: float = WAIT_S) -> None:
        """Wait until every message published so far has been received, evaluated and committed."""
        # A marker of its own round-trips through the broker after everything published before it (QoS 1,
        # PUBACKed in order); its dead letter is committed once all before it is. Counting received
        # messages instead ended the wait early when someone else's message came first.
        before = self.pipeline.messages_received
        marker = f"em/v1/devices/drain-{secrets.token_hex(6)}/event"
        await self.publish_raw(marker, b"{}")
        deadline = time.monotonic() + timeout
        while not (self.pipeline.messages_received > before and self.pipeline.idle
                   and await self.pipeline.pool.fetchval("SELECT 1 FROM dead_letters WHERE topic = $1", marker)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pipeline did not drain in {timeout:.0f} s")
            await asyncio.sleep(0.01)


def now_ms() -> int:
    return int(time.time() * 1000)


def _polygon_feature(zone_id: str, kind: str, ring: list[list[float]], subject: str) -> dict[str, Any]:
    return {
        "type": "Feature", "id": zone_id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"kind": kind, "name": zone_id, "subject_id": subject},
    }


@pytest.fixture(scope="session")
async def service(database_url: str, mqtt_url: str) -> AsyncIterator[Service]:
    async with running_service(database_url, mqtt_url) as (svc, _):
        yield svc


@asynccontextmanager
async def running_service(
    database_url: str, mqtt_url: str, clock: Callable[[], float] = time.time, **overrides: Any
) -> AsyncIterator[tuple[Service, FastAPI]]:
    """Start the whole service on a free port (settings `overrides` win); yields it and its ASGI app."""
    port = free_port()
    settings = Settings(
        database_url=database_url, mqtt_url=mqtt_url, http_port=port, batch_max_ms=20,
        mqtt_client_id=f"emwatch-test-{secrets.token_hex(4)}",
        bootstrap_admin=f"{ADMIN_USER}:{ADMIN_PASSWORD}", access_token_ttl_s=6 * 3600,
        # One fix opens/clears a zone episode and tests may teleport: debounce and the speed limit
        # are specified by the rule tests (tests/rules, tests/alerts), not here.
        zone_open_fixes=1, zone_open_s=0, zone_clear_fixes=1, zone_clear_s=0, max_speed_kmh=1e9,
        rules_tick_s=0.5,
    ).model_copy(update=overrides)
    app = create_app(settings, clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "server failed to start"
        await asyncio.sleep(0.02)
    pipeline: Pipeline = app.state.services.pipeline
    deadline = time.monotonic() + WAIT_S  # a pipeline that never connects fails the test, not hangs it
    while not pipeline.mqtt_connected:
        assert not task.done(), "server stopped before its pipeline connected to the broker"
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pipeline did not connect to {mqtt_url} within {WAIT_S} s")
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=WAIT_S) as http, \
            make_client(mqtt_url, f"test-pub-{secrets.token_hex(4)}", persistent=False) as mqtt:
        r = await http.post("/api/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield Service(base, f"ws://127.0.0.1:{port}/ws/alerts", mqtt_url, http, mqtt, pipeline, token), app
    server.should_exit = True
    await asyncio.wait_for(task, timeout=15)


class FeedClient:
    """A WebSocket feed client that keeps only one subject's events; `frames` counts the events of each
    text message (an array with `?frames=batch`, one event otherwise)."""

    def __init__(self, ws: websockets.ClientConnection, subject: str | None) -> None:
        self.ws, self.subject = ws, subject
        self.frames: list[int] = []
        self._unread: deque[dict[str, Any]] = deque()

    async def next(self, timeout: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while not self._unread:
                message = orjson.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic()))
                events = message if isinstance(message, list) else [message]
                self.frames.append(len(events))
                self._unread.extend(events)
            event = self._unread.popleft()
            if self.subject is None or event["subject_id"] == self.subject:
                return dict(event)

    async def expect_silence(self, seconds: float = 0.5) -> None:
        with pytest.raises(TimeoutError):
            message = await self.next(timeout=seconds)
            pytest.fail(f"unexpected event {message}")


@asynccontextmanager
async def feed(
    service: Service, subject: str | None, since: int | None = None, token: str | None = None,
    frames: str | None = None,
) -> AsyncIterator[FeedClient]:
    """A feed client authenticated as the admin (or with `token`), the token in Sec-WebSocket-Protocol."""
    query = {k: v for k, v in (("since", since), ("frames", frames)) if v is not None}
    url = service.ws_url + (f"?{urlencode(query)}" if query else "")
    protocols = [websockets.Subprotocol("bearer"), websockets.Subprotocol(token or service.token)]
    async with websockets.connect(url, subprotocols=protocols) as ws:
        yield FeedClient(ws, subject)
