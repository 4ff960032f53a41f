"""Private servers for the benchmarks, seeding a scene into PostgreSQL, and the service as a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import orjson
import psutil
import shapely
from scene import Scene

from emwatch.embedded import INGEST_SETTINGS, local_postgres
from emwatch.geo.geojson import zone_to_feature
from emwatch.server_process import free_port
from emwatch.store.db import migrate

ADMIN = ("bench-admin", "bench-admin-password")
# A production-like broker: no persistence autosave per N changes (the embedded dev config writes the
# store every 100 changes, which at 25k msg/s would measure the disk, not the service).
MOSQUITTO_CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages 50000
set_tcp_nodelay true
log_dest stderr
log_type error
"""


@contextmanager
def private_mosquitto(workdir: Path) -> Iterator[tuple[str, int]]:
    """Mosquitto on a free port; yields (url, pid)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port) + ("user root\n" if os.geteuid() == 0 else ""))
    binary = "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else "mosquitto"
    log = (workdir / "mosquitto.log").open("ab")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log, start_new_session=True)
    try:
        wait_port(port, proc)
        yield f"mqtt://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@contextmanager
def private_postgres(workdir: Path) -> Iterator[tuple[str, int]]:
    """A PostgreSQL cluster of our own with default durability (fsync on) and the settings
    docker-compose.yml runs (emwatch.embedded.INGEST_SETTINGS); yields (dsn, postmaster pid)."""
    with local_postgres(workdir, settings=INGEST_SETTINGS) as dsn:
        pid = int((workdir / "postmaster.pid").read_text().split()[0])
        yield dsn, pid


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


async def seed(dsn: str, scene: Scene) -> None:
    """Migrate, then COPY the scene's jurisdictions, subjects, devices and zones."""
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "jurisdictions", columns=["id", "name", "kind", "parent_id"],
            records=[(j.id, j.id, "city" if j.parent_id is None else "district", j.parent_id)
                     for j in scene.jurisdictions],
        )
        await conn.copy_records_to_table(
            "subjects", columns=["id", "name", "jurisdiction_id", "risk_level"],
            records=[(s.id, s.id, s.jurisdiction_id, s.risk_level) for s in scene.subjects],
        )
        await conn.copy_records_to_table(
            "devices", columns=["id", "kind", "subject_id"],
            records=[(d.id, d.kind, d.subject_id) for d in scene.devices],
        )
        rows = []
        for z in scene.zones:  # as registry_source.zone_row writes them: GeoJSON, and WKB (migration 013)
            geometry = orjson.dumps(zone_to_feature(z)["geometry"]).decode()
            wkb = shapely.to_wkb(z.geometry)
            rows.append((z.id, z.name, z.kind, geometry, wkb, z.radius_m, z.subject_id, z.jurisdiction_id))
        await conn.copy_records_to_table(
            "zones", records=rows, columns=[
                "id", "name", "kind", "geometry", "geometry_wkb", "radius_m", "subject_id", "jurisdiction_id"
            ],
        )
    finally:
        await conn.close()


class Service:
    """`emwatch serve` in a subprocess against the given servers."""

    def __init__(self, dsn: str, mqtt_url: str, workdir: Path, uvloop: bool = False, **settings: str) -> None:
        self.port = free_port()
        env = {**os.environ, "EMWATCH_DATABASE_URL": dsn, "EMWATCH_MQTT_URL": mqtt_url,
               "EMWATCH_HTTP_PORT": str(self.port), "EMWATCH_LOG_LEVEL": "WARNING",
               "EMWATCH_MQTT_CLIENT_ID": f"bench-{time.time_ns()}",
               "EMWATCH_BOOTSTRAP_ADMIN": f"{ADMIN[0]}:{ADMIN[1]}", "EMWATCH_ACCESS_TOKEN_TTL_S": "86400",
               **{f"EMWATCH_{k.upper()}": v for k, v in settings.items()}}
        cmd = [str(Path(sys.executable).with_name("emwatch")), "serve"]
        if uvloop:  # what `emwatch serve` would do with uvloop installed as the event loop
            cmd = [sys.executable, "-c", "import sys, uvloop; uvloop.install(); from emwatch.cli import main;"
                   " sys.exit(main(['serve']))"]
        self.log = (workdir / "service.log").open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=self.log)
        self.base = f"http://127.0.0.1:{self.port}"

    async def ready(self, timeout_s: float = 600) -> float:
        """Seconds from spawn until /healthz says the database and the broker are up."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"service exited with {self.proc.returncode}; see service.log")
                try:
                    if (await http.get(f"{self.base}/healthz")).status_code == 200:
                        return time.monotonic() - self.started
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("service did not become ready")

    async def counter(self, http: httpx.AsyncClient, name: str) -> float:
        """A Prometheus counter of the service (summed over labels)."""
        text = (await http.get(f"{self.base}/metrics")).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    async def feed_subprotocols(self) -> list[str]:
        """What the WebSocket feed client offers: `bearer, <token>` of the bootstrap admin."""
        async with httpx.AsyncClient(timeout=10) as http:
            login = {"username": ADMIN[0], "password": ADMIN[1]}
            r = await http.post(f"{self.base}/api/auth/login", json=login)
            r.raise_for_status()
            return ["bearer", r.json()["access_token"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total
