"""The servers of a chaos run (benchmarks/chaos.py): private PostgreSQL and Mosquitto that can be stopped
and restarted on the same ports and data, and the service as a supervised subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from emwatch.embedded import local_mosquitto, local_postgres
from emwatch.server_process import free_port

ROOT = Path(__file__).resolve().parents[1]
ADMIN = ("chaos-admin", "chaos-admin-password")
SERVICE_ENV = {  # one fix opens/clears an episode, teleporting is fine: the stream decides the alerts
    "EMWATCH_ZONE_OPEN_FIXES": "1", "EMWATCH_ZONE_OPEN_S": "0", "EMWATCH_ZONE_CLEAR_FIXES": "1",
    "EMWATCH_ZONE_CLEAR_S": "0", "EMWATCH_MAX_SPEED_KMH": "1e9", "EMWATCH_BATCH_MAX_MS": "20",
    "EMWATCH_PUBLISH_ALERTS_MQTT": "false", "EMWATCH_MQTT_CLIENT_ID": "emwatch-chaos",
}


class Server:
    """One embedded server (a context manager from emwatch.embedded) that can be stopped and restarted."""

    def __init__(self, name: str, factory: Callable[[], AbstractContextManager[str]]) -> None:
        self.name, self.factory = name, factory
        self._cm: AbstractContextManager[str] | None = None

    def start(self) -> str:
        self._cm = self.factory()
        return self._cm.__enter__()

    def stop(self) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(None, None, None)


class Cluster:
    """PostgreSQL, Mosquitto and the service, on fixed private ports so that restarts keep addresses."""

    def __init__(self, work: Path) -> None:
        self.work = work
        pg_port, mqtt_port, self.http_port = free_port(), free_port(), free_port()
        self.postgres = Server("postgres", lambda: local_postgres(work / "pg", pg_port, fast=True))
        self.broker = Server("mosquitto", lambda: local_mosquitto(work / "mqtt", mqtt_port))
        self.database_url = f"postgresql://postgres@127.0.0.1:{pg_port}/emwatch"
        self.mqtt_port = mqtt_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.service_lock = asyncio.Lock()  # held while a fault has the service down on purpose
        self.exits = 0

    def start_service(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMWATCH_")} | SERVICE_ENV | {
            "EMWATCH_DATABASE_URL": self.database_url, "EMWATCH_MQTT_URL": f"mqtt://127.0.0.1:{self.mqtt_port}",
            "EMWATCH_HTTP_PORT": str(self.http_port), "EMWATCH_BOOTSTRAP_ADMIN": ":".join(ADMIN),
            "EMWATCH_DATA_DIR": str(self.work / "data"), "EMWATCH_JWT_SECRET": "chaos-" * 8,
        }
        with (self.work / "service.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "emwatch.cli", "serve"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,
            )

    def stop_service(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    async def supervise(self) -> None:
        """Restart the service when it exits on its own (as systemd's Restart=always would)."""
        while True:
            await asyncio.sleep(0.5)
            async with self.service_lock:
                if self.proc is not None and self.proc.poll() is not None:
                    self.exits += 1
                    self.start_service()

    async def healthy(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.http_port}", timeout=2) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"service not healthy in {within_s} s; see {self.work / 'service.log'}")
