"""The service shows when it cannot work and recovers when it can: a dead pipeline turns /healthz 503
and stops the server (exit non-zero, for a supervisor to restart); a database that is down at start is
waited for; registry changes keep arriving after the database restarts. All on a private PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from emwatch import cli, metrics
from emwatch.api.app import create_app
from emwatch.api.health import EXIT_FAILED, ServiceHealth
from emwatch.model import AlertEvent
from emwatch.pipeline import Pipeline
from emwatch.server_process import free_port
from emwatch.settings import Settings
from tests.e2e.conftest import INSIDE, now_ms
from tests.e2e.standalone import wait_for
from tests.e2e.test_database_outage import PrivatePostgres, private_postgres, publish, seeded, standalone

# An exclusion zone inside subject 's''s home square, around the INSIDE point (120.10, 30.30).
EXCLUSION = (
    "INSERT INTO zones (id, kind, name, subject_id, geometry) VALUES ('{id}', 'exclusion', 'victim', 's',"
    " '{{\"type\": \"Polygon\", \"coordinates\": [[[120.099, 30.299], [120.101, 30.299], [120.101, 30.301],"
    " [120.099, 30.301], [120.099, 30.299]]]}}')"
)


@asynccontextmanager
async def serving(pg: PrivatePostgres, mqtt_url: str, **overrides: Any
                  ) -> AsyncIterator[tuple[FastAPI, uvicorn.Server, asyncio.Task[None], str]]:
    """The whole service on the private database, not yet waited for: (app, server, its task, base URL)."""
    port = free_port()
    settings = Settings(database_url=pg.dsn, mqtt_url=mqtt_url, http_port=port, batch_max_ms=20,
                        mqtt_client_id=f"emwatch-health-{secrets.token_hex(4)}", rules_tick_s=0.2,
                        ).model_copy(update=overrides)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ws="websockets-sansio", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve())
    try:
        yield app, server, task, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout=15)


async def test_a_dead_pipeline_turns_healthz_503_and_stops_the_server_with_a_failure_exit_code(
    tmp_path: Path, mqtt_url: str
) -> None:
    with private_postgres(tmp_path) as pg:
        async with serving(pg, mqtt_url) as (app, server, task, base):
            await wait_for(lambda: server.started, timeout=30)
            pipeline: Pipeline = app.state.services.pipeline
            health: ServiceHealth = app.state.health
            shutdown_asked = asyncio.Event()
            health.on_shutdown_request(shutdown_asked.set)  # first only note it: /healthz must answer
            await wait_for(lambda: pipeline.mqtt_connected)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                assert (await http.get("/healthz")).status_code == 200

                async def broken_tick(now_ms: int) -> list[AlertEvent]:
                    raise RuntimeError("injected failure")

                pipeline.process_tick = broken_tick  # type: ignore[method-assign]  # the next tick kills it
                await asyncio.wait_for(shutdown_asked.wait(), timeout=10)
                r = await http.get("/healthz")
            assert r.status_code == 503
            body = r.json()
            assert body["pipeline"] is False and body["mqtt"] is False and body["status"] == "degraded"
            assert "RuntimeError: injected failure" in body["pipeline_error"]
            assert not server.should_exit
            # The CLI's hook: the server stops by itself, and the exit code says it failed.
            health.on_shutdown_request(lambda: setattr(server, "should_exit", True))
            await asyncio.wait_for(task, timeout=15)
            assert health.exit_code == EXIT_FAILED


async def test_emwatch_serve_stops_by_itself_and_exits_non_zero_when_the_pipeline_dies(
    tmp_path: Path, mqtt_url: str
) -> None:
    with private_postgres(tmp_path) as pg:
        settings = Settings(database_url=pg.dsn, mqtt_url=mqtt_url, http_port=free_port(), rules_tick_s=0.2,
                            mqtt_client_id=f"emwatch-cli-{secrets.token_hex(4)}", log_level="WARNING")
        server, health = cli._server(settings)  # as `emwatch serve` builds it
        task = asyncio.create_task(server.serve())
        try:
            await wait_for(lambda: server.started, timeout=30)
            pipeline: Pipeline = cast(FastAPI, server.config.app).state.services.pipeline

            async def broken_tick(now_ms: int) -> list[AlertEvent]:
                raise RuntimeError("injected failure")

            pipeline.process_tick = broken_tick  # type: ignore[method-assign]
            await asyncio.wait_for(task, timeout=15)  # serve() returns: nobody asked it to but the failure
        finally:
            server.should_exit = True
            await asyncio.gather(task, return_exceptions=True)
        assert health.exit_code == EXIT_FAILED


async def test_a_normal_shutdown_is_no_failure(tmp_path: Path, mqtt_url: str) -> None:
    with private_postgres(tmp_path) as pg:
        async with serving(pg, mqtt_url) as (app, server, task, _):
            await wait_for(lambda: server.started, timeout=30)
            server.should_exit = True
            await asyncio.wait_for(task, timeout=15)
        health: ServiceHealth = app.state.health
        assert (health.failure, health.exit_code) == (None, 0)


async def test_the_service_waits_for_a_database_that_is_down_at_start(
    tmp_path: Path, mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="emwatch.store.db")
    with private_postgres(tmp_path) as pg:
        await pg.stop()
        async with serving(pg, mqtt_url) as (_, server, task, base):
            await wait_for(lambda: len(_db_warnings(caplog)) >= 2)  # it is retrying, not exiting
            assert not task.done() and not server.started
            await pg.start()
            await wait_for(lambda: server.started, timeout=30)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                await wait_for_status(http, "/healthz", 200)
        warnings = _db_warnings(caplog)
        assert all(r.exc_info is None and "database unavailable (attempt" in r.getMessage() for r in warnings)
        attempts = [int(r.getMessage().split("attempt ")[1].split(":")[0]) for r in warnings]
        assert attempts == list(range(1, len(attempts) + 1)), "one warning per attempt"


async def test_the_service_gives_up_after_the_configured_wait(tmp_path: Path, mqtt_url: str) -> None:
    with private_postgres(tmp_path) as pg:
        await pg.stop()
        settings = Settings(database_url=pg.dsn, mqtt_url=mqtt_url, database_wait_max_s=1.0)
        app = create_app(settings)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionRefusedError):  # the startup fails: uvicorn exits with code 3
            async with app.router.lifespan_context(app):
                pytest.fail("the service started without a database")
        assert asyncio.get_running_loop().time() - started < 5


async def test_registry_changes_reach_the_pipeline_after_a_database_restart(
    tmp_path: Path, mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with private_postgres(tmp_path) as pg:
        device = await seeded(pg)
        async with standalone(pg, mqtt_url, f"emwatch-listen-{secrets.token_hex(4)}",
                              rules_tick_s=0.2) as (pipeline, hub, pub):
            listener = pipeline.config_listener
            await wait_for(lambda: listener.connected)
            await pg.stop()
            await wait_for(lambda: not listener.connected)
            await pg.start()
            await wait_for(lambda: listener.connects >= 2, timeout=30)  # LISTENing again

            await pg.fetchval(EXCLUSION.format(id="z-victim"))  # arrives by NOTIFY on the new connection
            await wait_for(lambda: _has_zone(pipeline, "z-victim"))
            with hub.subscribe() as sub:
                await publish(pub, device, now_ms(), INSIDE)
                events = await asyncio.wait_for(sub.next_events(), 10)
            assert [(e.type, e.rule, e.zone_id) for e in events] == [("alert", "zone_entry", "z-victim")]
    tracebacks = [r for r in caplog.records if r.levelno == logging.WARNING and r.exc_info]
    assert tracebacks == [], "reconnect warnings are one line, without a traceback"


async def test_a_change_made_while_the_listener_was_away_is_picked_up_when_it_returns(
    tmp_path: Path, mqtt_url: str
) -> None:
    with private_postgres(tmp_path) as pg:
        await seeded(pg)
        async with standalone(pg, mqtt_url, f"emwatch-resync-{secrets.token_hex(4)}",
                              rules_tick_s=0.2) as (pipeline, _, _):
            listener = pipeline.config_listener
            await wait_for(lambda: listener.connected)
            await wait_for(lambda: not pipeline._config_dirty)  # the first connect's resync is done
            # Drop only the LISTEN connection, and change the registry before it reconnects (≥ 0.5 s):
            # this NOTIFY reaches nobody, so only the resync on reconnect can bring the zone in.
            await pg.fetchval("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE query LIKE 'LISTEN%'")
            await wait_for(lambda: not listener.connected)
            await pg.fetchval(EXCLUSION.format(id="z-missed"))
            assert not _has_zone(pipeline, "z-missed")
            await wait_for(lambda: listener.connects >= 2)
            await wait_for(lambda: _has_zone(pipeline, "z-missed"))


async def test_a_start_reads_the_registry_once(tmp_path: Path, mqtt_url: str) -> None:
    # A second full read right after the start would stall the first batches (seconds at 100k subjects).
    with private_postgres(tmp_path) as pg:
        device = await seeded(pg)
        loads_before = metrics.REGISTRY_RELOADS._value.get()
        async with standalone(pg, mqtt_url, f"emwatch-once-{secrets.token_hex(4)}",
                              rules_tick_s=0.2) as (pipeline, hub, pub):
            await wait_for(lambda: pipeline.config_listener.connected)
            with hub.subscribe():
                await publish(pub, device, now_ms(), INSIDE)
                await wait_for(lambda: pipeline.batches_done >= 1)
            await asyncio.sleep(0.5)  # a tick or two, where a pending reload would also run
            assert metrics.REGISTRY_RELOADS._value.get() - loads_before == 1
            await pg.fetchval(EXCLUSION.format(id="z-later"))  # and a change still arrives
            await wait_for(lambda: _has_zone(pipeline, "z-later"))


def _has_zone(pipeline: Pipeline, zone_id: str) -> bool:
    return pipeline.engine is not None and zone_id in pipeline.engine.registry.zones.index_of


def _db_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "emwatch.store.db" and r.levelno == logging.WARNING]


async def wait_for_status(http: httpx.AsyncClient, path: str, status: int, timeout: float = 10.0) -> None:
    """Poll `path` until it answers `status` (the broker connection comes up just after start)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (r := await http.get(path)).status_code != status:
        assert asyncio.get_running_loop().time() < deadline, f"{path} answered {r.status_code}: {r.text}"
        await asyncio.sleep(0.05)
