"""`emwatch serve | migrate | zones load FILE... | demo | purge | devices credentials DIR`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from emwatch.api.health import ServiceHealth
from emwatch.embedded import services
from emwatch.settings import Settings

log = logging.getLogger("emwatch")
T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T], use_uvloop: bool = True) -> T:
    """`asyncio.run`, on uvloop when it is installed and wanted (cheaper socket reads and callbacks on
    the hot MQTT/WebSocket path); the standard loop otherwise, so uvloop stays optional."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            log.info("uvloop not installed; running on the standard asyncio loop")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)


def _server(settings: Settings) -> tuple[uvicorn.Server, ServiceHealth]:
    from emwatch.api.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port,
        log_level=settings.log_level.lower(), ws="websockets-sansio", timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    health: ServiceHealth = app.state.health
    # A fatal failure (the pipeline died) stops the server; cmd_serve then exits non-zero.
    health.on_shutdown_request(lambda: setattr(server, "should_exit", True))
    return server, health


def cmd_serve(settings: Settings) -> int:
    with services(settings) as (database_url, mqtt_url):
        configured = settings.model_copy(update={"database_url": database_url, "mqtt_url": mqtt_url})
        server, health = _server(configured)
        run_loop(server.serve(), settings.uvloop)
    return health.exit_code


def cmd_migrate(settings: Settings) -> int:
    with services(settings) as (database_url, _):
        applied, filled = asyncio.run(_migrate(database_url))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")
    if filled:
        print(f"stored the WKB of {filled} zone(s) saved without it (read faster at start)")
    return 0


async def _migrate(database_url: str) -> tuple[list[str], int]:
    """Apply migrations, then fill in what a migration cannot compute in SQL (zones' WKB, 013)."""
    import asyncpg

    from emwatch.store.db import migrate
    from emwatch.store.zone_rows import backfill_zone_wkb

    applied = await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        return applied, await backfill_zone_wkb(conn)
    finally:
        await conn.close()


def cmd_zones_load(settings: Settings, files: Sequence[Path]) -> int:
    from emwatch.geo.geojson import ZoneError, zones_from_geojson
    from emwatch.rules.schedule import parse_schedule
    from emwatch.store import repo
    from emwatch.store.db import connect_pool, migrate
    from emwatch.store.registry_source import zone_row

    zones = []
    for path in files:
        try:
            loaded = zones_from_geojson(json.loads(path.read_text(encoding="utf-8")))
            for zone in loaded:
                if zone.schedule is not None:
                    parse_schedule(zone.schedule)  # ScheduleError is a ValueError
            zones.extend(loaded)
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
    from emwatch.api.demo_users import create_demo_users

    async def demo(configured: Settings) -> None:
        server, _ = _server(configured)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                return await serving
            await asyncio.sleep(0.05)
        base = f"http://{configured.http_host}:{configured.http_port}"
        print(f"\n  emwatch demo running: command center {base}/  API {base}/docs  metrics {base}/metrics"
              f"\n  Ctrl-C stops.\n", flush=True)
        assert configured.mqtt_url is not None and configured.bootstrap_admin is not None
        admin_user, _, admin_password = configured.bootstrap_admin.partition(":")
        sim = asyncio.create_task(run_simulation(
            api_url=base, mqtt_url=configured.mqtt_url, subjects=subjects, speed=speed,
            duration_s=None, seed=1, batch=1, credentials=(admin_user, admin_password),
        ))
        demo_users = await create_demo_users(base, (admin_user, admin_password))
        lines = [f"    {role:<10} {user:<12} {password}" for user, password, role in demo_users]
        print("\n  demo logins (role, user, password):\n"
              f"    {'admin':<10} {admin_user:<12} {admin_password}\n" + "\n".join(lines) + "\n", flush=True)
        await serving  # uvicorn handles Ctrl-C and returns
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim

    # The demo needs an admin to set itself up; without EMWATCH_BOOTSTRAP_ADMIN it invents one.
    bootstrap = settings.bootstrap_admin or f"admin:{secrets.token_urlsafe(9)}"
    with services(settings) as (database_url, mqtt_url):
        configured = settings.model_copy(update={"database_url": database_url, "mqtt_url": mqtt_url,
                                                 "bootstrap_admin": bootstrap})
        run_loop(demo(configured), settings.uvloop)
    return 0


def cmd_purge(settings: Settings, dry_run: bool) -> int:
    """Purge fixes past their retention period (legal holds excepted) and audit it."""
    from datetime import UTC, datetime, timedelta

    from emwatch.store.db import connect_pool, migrate
    from emwatch.store.retention import PurgeResult, purge_fixes

    async def purge(database_url: str) -> PurgeResult:
        await migrate(database_url)
        async with connect_pool(database_url, min_size=1, max_size=1) as pool:
            return await purge_fixes(
                pool, default_days=settings.retention_days, now=datetime.now(UTC), dry_run=dry_run,
                hold_margin=timedelta(seconds=settings.retention_hold_margin_s), actor="cli:purge",
            )

    with services(settings) as (database_url, _):
        result = asyncio.run(purge(database_url))
    verb = "would purge" if dry_run else "purged"
    audit = f"; audit entry {result.audit_id}" if result.audit_id is not None else ""
    print(f"{verb} {result.purged} fix(es); kept {result.held} under legal hold; default"
          f" {result.default_days} d, {len(result.overrides)} jurisdiction override(s){audit}")
    return 0


def cmd_device_credentials(settings: Settings, args: argparse.Namespace) -> int:
    """Issue MQTT passwords (Mosquitto passwd + acl in args.dir); print them once, as CSV."""
    from emwatch.broker_auth import issue

    devices = list(args.device)
    if args.all_devices:
        from emwatch.store.db import connect_pool

        async def registered(database_url: str) -> list[str]:
            async with connect_pool(database_url, min_size=1, max_size=1) as pool:
                return [r["id"] for r in await pool.fetch("SELECT id FROM devices ORDER BY id")]

        with services(settings) as (database_url, _):
            devices += asyncio.run(registered(database_url))
    try:
        passwords = issue(args.dir, devices=devices, gateways=args.gateway, officers=args.officer,
                          service_user=args.service_user)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("username,password")
    for user, password in passwords.items():
        print(f"{user},{password}")
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
    purge = sub.add_parser("purge", help="delete fixes past their retention period (legal holds kept)")
    purge.add_argument("--dry-run", action="store_true", help="only count what would be purged")
    devices = sub.add_parser("devices", help="manage devices")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True)
    creds = devices_sub.add_parser("credentials", help="issue MQTT passwords into Mosquitto's passwd and acl")
    creds.add_argument("dir", type=Path, help="directory holding Mosquitto's passwd and acl files")
    creds.add_argument("--device", action="append", default=[], help="device id (repeatable)")
    creds.add_argument("--all-devices", action="store_true", help="every registered device")
    creds.add_argument("--gateway", action="append", default=[], help="gateway id (repeatable)")
    creds.add_argument("--officer", action="append", default=[], help="officer login (repeatable)")
    creds.add_argument("--service-user", help="the service's own MQTT user (e.g. emwatch)")
    args = parser.parse_args(argv)

    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return cmd_serve(settings)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "zones":
        return cmd_zones_load(settings, args.files)
    if args.command == "purge":
        return cmd_purge(settings, args.dry_run)
    if args.command == "devices":
        return cmd_device_credentials(settings, args)
    return cmd_demo(settings, args.subjects, args.speed)


if __name__ == "__main__":
    sys.exit(main())
