"""The FastAPI application: lifespan starts the store, the feed and the pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from emwatch import __version__
from emwatch.api import (
    alert_routes,
    auth_routes,
    errors,
    feed_ws,
    notify_routes,
    openapi,
    order_routes,
    page,
    permit_routes,
    push_routes,
    registry_routes,
    security,
    severity_routes,
    totp,
)
from emwatch.api.background import bootstrap_admin, escalation_loop
from emwatch.api.deps import Services
from emwatch.api.health import ServiceHealth
from emwatch.api.tokens import TokenIssuer
from emwatch.api.totp_seal import TotpSealer
from emwatch.feed.hub import AlertFeed
from emwatch.notify.service import running_notifier
from emwatch.pipeline import Pipeline
from emwatch.settings import Settings
from emwatch.store.db import connect_pool, migrate, wait_for_database

log = logging.getLogger(__name__)


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> FastAPI:
    """The service as an ASGI app; settings must name the database and the broker.

    `clock` (epoch seconds) drives token expiry and alert escalation; tests pass one they can move.
    """
    if settings.database_url is None or settings.mqtt_url is None:
        raise ValueError("create_app needs database_url and mqtt_url (embedded servers start in the CLI)")
    database_url = settings.database_url

    health = ServiceHealth()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # PostgreSQL may still be starting (or restarting): wait for it rather than exit at once.
        await wait_for_database(database_url, settings.database_wait_max_s)
        await migrate(database_url)
        async with connect_pool(database_url) as pool, running_notifier(settings, pool, clock) as notifier:
            app.state.notifier = notifier
            last_seq = await pool.fetchval("SELECT coalesce(max(seq), 0) FROM alert_events")
            feed = AlertFeed(settings.feed_queue_max, last_seq=last_seq)
            pipeline = Pipeline(settings, pool, feed)
            await bootstrap_admin(pool, settings.bootstrap_admin)
            tokens, sealer = TokenIssuer(settings, clock), TotpSealer(settings.totp_keys)
            svc = Services(settings, pool, feed, pipeline, tokens, clock, sealer)
            app.state.services = svc
            task = asyncio.create_task(pipeline.run(), name="pipeline")
            health.watch_pipeline(task)  # a dead pipeline: /healthz 503 and the server asked to stop
            escalation = asyncio.create_task(escalation_loop(svc), name="escalation")
            try:
                yield
            finally:
                health.stopping = True
                task.cancel()
                escalation.cancel()
                await asyncio.gather(task, escalation, return_exceptions=True)

    app = FastAPI(title="emwatch", version=__version__, lifespan=lifespan)
    app.state.health = health  # the CLI hooks the server's shutdown to it and reads the exit code
    app.include_router(registry_routes.router)
    app.include_router(alert_routes.router)
    app.include_router(permit_routes.router)
    app.include_router(order_routes.router)
    app.include_router(severity_routes.router)
    app.include_router(push_routes.router)
    app.include_router(notify_routes.router)
    app.include_router(feed_ws.router)
    app.include_router(auth_routes.router)
    app.include_router(totp.router)
    app.include_router(page.router)
    app.mount("/static", page.static_files(), name="static")
    security.install(app, settings, clock)  # security headers, API rate limit, login throttle
    openapi.install(app)  # 422 bodies as they really are
    errors.install(app)  # database refusals are 4xx, not 500

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 when the pipeline runs, the database answers and the broker is connected; 503 otherwise."""
        svc: Services = app.state.services
        checks: dict[str, Any] = {"pipeline": health.failure is None, "mqtt": svc.pipeline.mqtt_connected}
        if health.failure is not None:
            checks["pipeline_error"] = health.failure
        try:
            checks["database"] = await svc.pool.fetchval("SELECT true", timeout=2)
        except Exception as exc:  # any failure means unhealthy, reported as such
            checks["database"] = False
            checks["database_error"] = str(exc)
        ok = bool(checks["pipeline"] and checks["mqtt"] and checks["database"])
        checks["status"] = "ok" if ok else "degraded"
        return JSONResponse(checks, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)  # Prometheus text, not part of the JSON API
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app

