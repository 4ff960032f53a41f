"""Embedded defaults: run PostgreSQL and Mosquitto as child processes with their data under one directory.

Servers are stopped on exit and their data is kept, so the next start on the same directory reuses it.
Starting, waiting for and stopping a child server: emwatch/server_process.py.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from emwatch.server_process import (
    START_TIMEOUT_S,
    claim_port,
    log_tail,
    stop_server,
    unprivileged_prefix,
    wait_for_port,
)

if TYPE_CHECKING:
    from emwatch.settings import Settings

log = logging.getLogger(__name__)

PG_USER = "postgres"
PG_DATABASE = "emwatch"

_AMQTT_BROKER = """
import asyncio, signal, sys
from amqtt.broker import Broker

async def main() -> None:
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{sys.argv[1]}"}},
                     "sys_interval": 0, "auth": {"allow-anonymous": True}})
    await broker.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await broker.shutdown()

asyncio.run(main())
"""


def _pg_bindir() -> Path | None:
    """Directory holding initdb and postgres: pg_config, else the newest Debian install, else PATH."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(debian, key=lambda p: int(Path(p).parent.name), reverse=True)]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    return next((d for d in candidates if (d / "initdb").exists() and (d / "postgres").exists()), None)


# PostgreSQL settings for a server taking fixes at tens of thousands per second (docker-compose.yml and
# the benchmarks' servers use them). At the stock max_wal_size (1 GB) ~30 MB/s of WAL forces a checkpoint
# every ~20-30 s, and after each one every index leaf touched is written whole to the WAL again; with
# checkpoints 15 min apart that cost is spread thin. lz4 shrinks those full-page images.
INGEST_SETTINGS = (
    "max_wal_size=8GB", "checkpoint_timeout=15min", "wal_compression=lz4", "shared_buffers=1GB",
)


@contextmanager
def local_postgres(
    data_dir: Path, port: int | None = None, *, fast: bool = False, settings: Sequence[str] = ()
) -> Iterator[str]:
    """Run PostgreSQL on 127.0.0.1 with its cluster in data_dir; yield the DSN of database `emwatch`.

    fast=True turns off fsync and synchronous commit: only for throw-away test data. `settings`: more
    server settings ("name=value"), applied last.
    """
    data_dir = data_dir.resolve()
    bindir = _pg_bindir()
    if bindir is None:
        yield from _pgserver(data_dir)
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    prefix = unprivileged_prefix(data_dir)
    if not any(data_dir.iterdir()):
        initdb = [str(bindir / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", PG_USER, "-E", "UTF8"]
        done = subprocess.run([*prefix, *initdb, "--no-sync"], cwd=data_dir, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed in {data_dir}:\n{done.stdout.decode()}{done.stderr.decode()}")
        log.info("initialised a PostgreSQL cluster in %s", data_dir)
    port = claim_port(port)
    socket_dir = str(data_dir) if len(str(data_dir)) < 90 else ""  # Unix socket paths max out at 107 bytes
    conf = ["listen_addresses=127.0.0.1", f"unix_socket_directories={socket_dir}", "max_connections=200"]
    if fast:
        conf += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    conf += settings
    cmd = [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port)]
    cmd += [arg for setting in conf for arg in ("-c", setting)]
    log_path = data_dir / "server.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [*prefix, *cmd], cwd=data_dir, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            start_new_session=True,  # Ctrl-C stops the app first; we stop the server after it
        )
    try:
        _wait_for_postgres(bindir, port, proc, log_path, data_dir)
        log.info("started PostgreSQL %s on 127.0.0.1:%d (pid %d, data %s)", bindir, port, proc.pid, data_dir)
        yield f"postgresql://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}"
    finally:
        stop_server(proc, signal.SIGINT, "PostgreSQL")  # SIGINT is "fast" shutdown: does not wait for clients


def _wait_for_postgres(bindir: Path, port: int, proc: subprocess.Popen[bytes], log_path: Path,
                       data_dir: Path) -> None:
    """Wait until the server accepts queries, then create the `emwatch` database if it is missing."""
    psql = [str(bindir / "psql"), "-XtA", "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "-d", "postgres"]
    deadline = time.monotonic() + START_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        probe = subprocess.run([*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and proc.poll() is None:
            if probe.stdout.strip() != "1":
                create = [*psql, "-c", f"CREATE DATABASE {PG_DATABASE}"]
                subprocess.run(create, capture_output=True, check=True)
            return
        time.sleep(0.1)
    stop_server(proc, signal.SIGKILL, "PostgreSQL")
    hint = " (as root it runs as an unprivileged user, who must reach it)" if os.geteuid() == 0 else ""
    raise RuntimeError(
        f"PostgreSQL did not start on port {port} with data {data_dir}{hint}; log {log_path}:\n"
        f"{log_tail(log_path)}"
    )


def _pgserver(data_dir: Path) -> Iterator[str]:
    """Fallback without system PostgreSQL: the `pgserver` wheel, which bundles the binaries."""
    try:
        import pgserver
    except ImportError:
        raise RuntimeError(
            "PostgreSQL server binaries not found: install them (apt-get install postgresql) "
            "or `pip install pgserver`, or set EMWATCH_DATABASE_URL"
        ) from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        if "(0 rows)" in str(server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}';")):
            server.psql(f"CREATE DATABASE {PG_DATABASE};")
        log.info("started PostgreSQL from pgserver (data %s)", data_dir)
        yield str(server.get_uri(PG_DATABASE))
    finally:
        server.cleanup()


def _mosquitto_config(
    data_dir: Path, port: int, auth: tuple[Path, Path] | None, extra: Sequence[str], persist: bool
) -> str:
    login = ["allow_anonymous true"]
    if auth is not None:
        password_file, acl_file = (path.resolve() for path in auth)
        login = ["allow_anonymous false", f"password_file {password_file}", f"acl_file {acl_file}"]
    lines = [
        f"listener {port} 127.0.0.1",
        *login,
        *(_persistence_lines(data_dir) if persist else ["persistence false"]),
        "max_queued_messages 1000000",  # a consumer that is down for a while loses nothing
        "max_inflight_messages 10000",  # our consumer acks a fix only after its batch commits
        "set_tcp_nodelay true",
        "log_dest stderr",  # stderr goes to mosquitto.log, with startup errors too
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else mosquitto drops to user `mosquitto`, which may not reach data_dir
    return "\n".join([*lines, *extra]) + "\n"  # extra last: a `listener` there takes its own tls lines


def _persistence_lines(data_dir: Path) -> list[str]:
    return [
        "persistence true",
        f"persistence_location {data_dir}/",
        "autosave_on_changes true",
        "autosave_interval 100",  # with autosave_on_changes: write the store every 100 changes
    ]


def _mosquitto_binary() -> str | None:
    """Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH."""
    sbin = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
    return shutil.which("mosquitto") or next((p for p in sbin if Path(p).exists()), None)


@contextmanager
def local_mosquitto(
    data_dir: Path, port: int | None = None, *, auth: tuple[Path, Path] | None = None,
    extra_config: Sequence[str] = (), persist: bool = True,
) -> Iterator[str]:
    """Run an MQTT broker on 127.0.0.1 with its persistence in data_dir; yield `mqtt://127.0.0.1:PORT`.

    persist=False keeps sessions in memory only: for tests, where rewriting a store that grows with
    every queued message (autosave_on_changes) would make the broker the bottleneck.

    Mosquitto if installed, else the `amqtt` broker (MQTT 3.1.1 only, no persistence).
    auth=(password_file, acl_file) turns anonymous access off; extra_config lines (e.g. a TLS
    listener) are appended to mosquitto.conf. Both need Mosquitto.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = claim_port(port)
    if mosquitto := _mosquitto_binary():
        config = data_dir / "mosquitto.conf"
        config.write_text(_mosquitto_config(data_dir, port, auth, extra_config, persist))
        cmd, name = [mosquitto, "-c", str(config)], "Mosquitto"
    elif auth is not None or extra_config:
        raise RuntimeError("mosquitto not found: authentication and extra listeners need it")
    else:
        try:
            import amqtt  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "mosquitto not found: install it (apt-get install mosquitto) "
                "or `pip install amqtt`, or set EMWATCH_MQTT_URL"
            ) from None
        cmd, name = [sys.executable, "-c", _AMQTT_BROKER, str(port)], "amqtt broker (MQTT 3.1.1 only)"
    log_path = data_dir / "mosquitto.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=data_dir, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=log_file, start_new_session=True)
    try:
        wait_for_port(port, proc, name, log_path)
        log.info("started %s on 127.0.0.1:%d (pid %d, data %s)", name, port, proc.pid, data_dir)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        stop_server(proc, signal.SIGTERM, name)


@contextmanager
def services(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield (database_url, mqtt_url): the configured ones, or local servers under settings.data_dir."""
    with ExitStack() as stack:
        database_url = settings.database_url
        if database_url is None:
            database_url = stack.enter_context(local_postgres(settings.data_dir / "postgres"))
        else:
            log.info("using the configured PostgreSQL")
        mqtt_url = settings.mqtt_url
        if mqtt_url is None:
            mqtt_url = stack.enter_context(local_mosquitto(settings.data_dir / "mosquitto"))
        else:
            log.info("using the configured MQTT broker")
        yield database_url, mqtt_url
