"""`emwatch serve | migrate | zones load FILE... | demo`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from emwatch.embedded import services
from emwatch.settings import Settings

log = logging.getLogger("emwatch")


def _server(settings: Settings) -> uvicorn.Server:
    from emwatch.api.app import create_app

    config = uvicorn.Config(
        create_app(settings), host=settings.http_host, port=settings.http_port,
        log_level=settings.log_level.lower(), ws="websockets-sansio", timeout_graceful_shutdown=5, lifespan="on",
    )
    return uvicorn.Server(config)


def cmd_serve(settings: Settings) -> int:
    with services(settings) as (database_url, mqtt_url):
        configured = settings.model_copy(update={"database_url": database_url, "mqtt_url": mqtt_url})
        asyncio.run(_server(configured).serve())
    return 0


def cmd_migrate(settings: Settings) -> int:
    from emwatch.store.db import migrate

    with services(settings) as (database_url, _):
        applied = asyncio.run(migrate(database_url))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")
    return 0


def cmd_zones_load(settings: Settings, files: Sequence[Path]) -> int:
    from emwatch.geo.geojson import ZoneError, zones_from_geojson
    from emwatch.store import repo
    from emwatch.store.db import connect_pool, migrate
    from emwatch.store.registry_source import zone_row

    zones = []
    for path in files:
        try:
            zones.extend(zones_from_geojson(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, ZoneError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2

    async def load(database_url: str) -> int:
        await migrate(database_url)
        async with connect_pool(database_url, min_size=1, max_size=1) as pool:
            return await repo.upsert_zones(pool, [zone_row(z) for z in zones])

    with services(settings) as (database_url, _):
        count = asyncio.run(load(database_url))
    print(f"loaded {count} zone(s)")
    return 0


def cmd_demo(settings: Settings, subjects: int, speed: float) -> int:
    """Run the service with its embedded servers and the device simulator feeding it."""
    from device_sim import run_simulation

    async def demo(configured: Settings) -> None:
        server = _server(configured)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                return await serving
            await asyncio.sleep(0.05)
        base = f"http://{configured.http_host}:{configured.http_port}"
        print(f"\n  emwatch demo running: API {base}/docs  feed ws://{configured.http_host}:"
              f"{configured.http_port}/ws/alerts?since=0  metrics {base}/metrics\n  Ctrl-C stops.\n",
              flush=True)
        assert configured.mqtt_url is not None
        sim = asyncio.create_task(run_simulation(
            api_url=base, mqtt_url=configured.mqtt_url, subjects=subjects, speed=speed,
            duration_s=None, seed=1, batch=1,
        ))
        await serving  # uvicorn handles Ctrl-C and returns
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim

    with services(settings) as (database_url, mqtt_url):
        configured = settings.model_copy(update={"database_url": database_url, "mqtt_url": mqtt_url})
        asyncio.run(demo(configured))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service (HTTP API, WebSocket feed, MQTT pipeline)")
    sub.add_parser("migrate", help="apply database migrations (idempotent)")
    zones = sub.add_parser("zones", help="manage zones").add_subparsers(dest="zones_command", required=True)
    load = zones.add_parser("load", help="load GeoJSON zone files into the database (same id: new version)")
    load.add_argument("files", nargs="+", type=Path)
    demo = sub.add_parser("demo", help="run the service with embedded servers and simulated bracelets")
    demo.add_argument("--subjects", type=int, default=300)
    demo.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args(argv)

    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return cmd_serve(settings)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "zones":
        return cmd_zones_load(settings, args.files)
    return cmd_demo(settings, args.subjects, args.speed)


if __name__ == "__main__":
    sys.exit(main())
