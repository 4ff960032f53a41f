"""The database's refusals as client errors: a value PostgreSQL cannot hold or a row a constraint
rejects is the request's fault (422/409), not a server error (500)."""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    status = 409 if isinstance(exc, asyncpg.UniqueViolationError) else 422
    # Only the database's one-line reason: it names the column or constraint, never other rows' data.
    message = exc.args[0] if exc.args else type(exc).__name__
    return JSONResponse({"detail": str(message).splitlines()[0]}, status_code=status)


def install(app: FastAPI) -> None:
    """Map out-of-range values (asyncpg.DataError: e.g. an id beyond int64) and constraint
    violations (check, not-null, foreign key, unique) of handlers that did not catch them."""
    app.add_exception_handler(asyncpg.DataError, _refused)
    app.add_exception_handler(asyncpg.IntegrityConstraintViolationError, _refused)
