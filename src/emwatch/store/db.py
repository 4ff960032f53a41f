"""Connection pool and schema migrations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x656D7761  # advisory lock id: two starting instances never migrate at once
# What a lost or refused connection looks like through asyncpg (a query error is not among them);
# OSError covers refusals and connect timeouts.
CONNECTION_ERRORS = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
    asyncpg.InternalClientError, asyncpg.AdminShutdownError,
)


def raise_if_cancelling() -> None:
    """Stop a loop whose cancellation a library swallowed (a cancel racing a database or broker call
    can surface as a caught connection error): the task is still marked, so shutdown must not hang."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ConciseTracebacks(logging.Filter):
    """Turn a WARNING that carries a traceback into one line naming the error; the traceback itself
    goes to DEBUG. asyncpg's pool logs a full traceback for every failed reconnect during an outage."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and logging.WARNING <= record.levelno < logging.ERROR:
            exc = record.exc_info[1]
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s", record.getMessage(), exc_info=record.exc_info)
            record.msg, record.args = f"{record.getMessage()} ({type(exc).__name__}: {exc})", ()
            record.exc_info, record.exc_text = None, None
        return True


def quiet_reconnect_tracebacks(logger_name: str = "asyncpg.pool") -> None:
    """Install ConciseTracebacks on asyncpg's pool logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, ConciseTracebacks) for f in logger.filters):
        logger.addFilter(ConciseTracebacks())


async def _init_connection(conn: asyncpg.Connection) -> None:
    import orjson

    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


@asynccontextmanager
async def connect_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose connections decode json/jsonb to Python values; its reconnect warnings are one line."""
    quiet_reconnect_tracebacks()
    # JIT off: PostgreSQL JIT-compiles any plan estimated above jit_above_cost, and small never-analysed
    # tables (webhooks, caseload) get default row guesses: the outbox's recipients query cost ~0.85 s to
    # compile and 0.03 ms to run. Our queries are short OLTP ones; none gains from JIT.
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                     server_settings={"jit": "off"})
    try:
        yield pool
    finally:
        await pool.close()


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) of every bundled migration, in order."""
    folder = resources.files("emwatch.store") / "migrations"
    files = sorted((f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), sql) for name, sql in files]


async def migrate(dsn: str) -> list[str]:
    """Apply the migrations not yet applied; returns the versions applied now. Idempotent."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            log.info("applied migration %s", version)
            applied_now.append(version)
    finally:
        await conn.close()
    return applied_now


async def wait_for_database(dsn: str, max_wait_s: float = 0, first_delay_s: float = 0.5,
                            max_delay_s: float = 15.0) -> None:
    """Return once PostgreSQL accepts a connection, retrying with capped exponential backoff; one
    WARNING line per failed attempt. Raises the last connection error after `max_wait_s` (0: never)."""
    started, delay, attempt = time.monotonic(), first_delay_s, 0
    while True:
        attempt += 1
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
        except CONNECTION_ERRORS as exc:
            waited = time.monotonic() - started
            if max_wait_s > 0 and waited + delay > max_wait_s:
                log.error("database unavailable after %.0f s and %d attempt(s): %s", waited, attempt, exc)
                raise
            log.warning("database unavailable (attempt %d: %s: %s); retrying in %.1f s",
                        attempt, type(exc).__name__, exc, delay)
            log.debug("database connection attempt %d failed", attempt, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
            continue
        await conn.close()
        if attempt > 1:
            log.info("database available after %d attempt(s)", attempt)
        return
