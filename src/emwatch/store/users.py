"""Users, caseloads, refresh tokens, and the scope (jurisdictions and subjects) a user may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

ROLES = ("admin", "supervisor", "operator", "officer")
USER_COLUMNS = "username, role, jurisdiction_id, display_name, disabled, created_at"


class UserExists(Exception):
    """A user with that name exists already."""


class UnknownReference(Exception):
    """The row refers to a jurisdiction, user or subject that does not exist."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What one user may see: subjects of `jurisdictions` or in `subjects`, zones of `zone_jurisdictions`."""

    everything: bool
    jurisdictions: frozenset[str]  # subjects registered here are visible (a subtree, or an officer's office)
    subjects: frozenset[str]  # plus these: an officer's caseload
    zone_jurisdictions: frozenset[str]  # the above and their ancestors: shared zones there apply to them

    def sees(self, subject_id: str, jurisdiction_id: str) -> bool:
        """Whether a subject (by id and its jurisdiction) is inside this scope."""
        return self.everything or jurisdiction_id in self.jurisdictions or subject_id in self.subjects

    def args(self) -> tuple[bool, list[str], list[str]]:
        """Parameters for the `visible(...)` SQL predicate of store.scoped."""
        return self.everything, sorted(self.jurisdictions), sorted(self.subjects)


EVERYTHING = Scope(True, frozenset(), frozenset(), frozenset())

_SUBTREE = """
WITH RECURSIVE down(id) AS (
    SELECT id FROM jurisdictions WHERE id = $1
    UNION SELECT j.id FROM jurisdictions j JOIN down ON j.parent_id = down.id
) SELECT coalesce(array_agg(id), '{}') FROM down
"""
_ANCESTORS_OR_SELF = """
WITH RECURSIVE up(id, parent_id) AS (
    SELECT id, parent_id FROM jurisdictions WHERE id = ANY($1::text[])
    UNION SELECT j.id, j.parent_id FROM jurisdictions j JOIN up ON j.id = up.parent_id
) SELECT coalesce(array_agg(id), '{}') FROM up
"""


async def scope_of(pool: asyncpg.Pool, role: str, username: str, jurisdiction_id: str | None) -> Scope:
    """A user's scope: admins everything; supervisors/operators a subtree; officers office + caseload."""
    if role == "admin":
        return EVERYTHING
    assert jurisdiction_id is not None
    async with pool.acquire() as conn:
        if role == "officer":
            jurisdictions = [jurisdiction_id]
            rows = await conn.fetch(
                "SELECT c.subject_id, s.jurisdiction_id FROM caseload c"
                " JOIN subjects s ON s.id = c.subject_id WHERE c.officer = $1", username,
            )
            subjects = [r["subject_id"] for r in rows]
            starts = [jurisdiction_id, *{r["jurisdiction_id"] for r in rows}]
        else:
            jurisdictions = list(await conn.fetchval(_SUBTREE, jurisdiction_id))
            subjects, starts = [], [jurisdiction_id]
        ancestors = await conn.fetchval(_ANCESTORS_OR_SELF, starts)
    zone_jurisdictions = frozenset([*ancestors, *jurisdictions])
    return Scope(False, frozenset(jurisdictions), frozenset(subjects), zone_jurisdictions)


async def get_user(pool: asyncpg.Pool, username: str) -> dict[str, Any] | None:
    """The user row including its password hash, or None."""
    row = await pool.fetchrow(
        f"SELECT {USER_COLUMNS}, password_hash, totp_secret, totp_enabled FROM users WHERE username = $1",
        username,
    )
    return dict(row) if row else None


async def create_user(
    pool: asyncpg.Pool, username: str, password_hash: str, role: str, jurisdiction_id: str | None,
    display_name: str = "",
) -> dict[str, Any]:
    """Insert a user; raises UserExists or UnknownReference."""
    try:
        row = await pool.fetchrow(
            "INSERT INTO users (username, password_hash, role, jurisdiction_id, display_name)"
            f" VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}",
            username, password_hash, role, jurisdiction_id, display_name,
        )
    except asyncpg.UniqueViolationError as exc:
        raise UserExists(f"user {username!r} exists already") from exc
    except asyncpg.ForeignKeyViolationError as exc:
        raise UnknownReference(exc.detail or str(exc)) from exc
    assert row is not None
    return dict(row)


async def update_user(
    pool: asyncpg.Pool, username: str, *, password_hash: str | None = None, disabled: bool | None = None
) -> dict[str, Any] | None:
    """Change a user's password and/or disabled flag; None when there is no such user."""
    row = await pool.fetchrow(
        "UPDATE users SET password_hash = coalesce($2, password_hash), disabled = coalesce($3, disabled)"
        f" WHERE username = $1 RETURNING {USER_COLUMNS}",
        username, password_hash, disabled,
    )
    return dict(row) if row else None


async def list_users(pool: asyncpg.Pool, jurisdictions: list[str] | None) -> list[dict[str, Any]]:
    """All users, or those working in `jurisdictions`."""
    rows = await pool.fetch(
        f"SELECT {USER_COLUMNS} FROM users WHERE $1::text[] IS NULL OR jurisdiction_id = ANY($1::text[])"
        " ORDER BY username", jurisdictions,
    )
    return [dict(r) for r in rows]


async def assign_caseload(pool: asyncpg.Pool, officer: str, subject_id: str, assigned_by: str) -> bool:
    """Put a subject on an officer's caseload; False if it was already there."""
    try:
        status = await pool.execute(
            "INSERT INTO caseload (officer, subject_id, assigned_by) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            officer, subject_id, assigned_by,
        )
    except asyncpg.ForeignKeyViolationError as exc:
        raise UnknownReference(exc.detail or str(exc)) from exc
    return bool(status.endswith(" 1"))


async def unassign_caseload(pool: asyncpg.Pool, officer: str, subject_id: str) -> bool:
    """Take a subject off an officer's caseload; False if it was not on it."""
    status = await pool.execute(
        "DELETE FROM caseload WHERE officer = $1 AND subject_id = $2", officer, subject_id
    )
    return bool(status.endswith(" 1"))


async def caseload_of(pool: asyncpg.Pool, subject_id: str) -> list[str]:
    """The officers a subject is assigned to."""
    rows = await pool.fetch("SELECT officer FROM caseload WHERE subject_id = $1 ORDER BY officer", subject_id)
    return [r["officer"] for r in rows]


# -- TOTP second factor -------------------------------------------------------------------------


async def set_totp_secret(pool: asyncpg.Pool, username: str, secret: str | None) -> bool:
    """Store a pending (not yet enabled) TOTP secret, or clear the factor; False if TOTP is enabled."""
    status = await pool.execute(
        "UPDATE users SET totp_secret = $2, totp_enabled = false, totp_last_step = NULL"
        " WHERE username = $1 AND ($2::text IS NULL OR NOT totp_enabled)", username, secret,
    )
    return bool(status.endswith(" 1"))


async def reseal_totp_secret(pool: asyncpg.Pool, username: str, stored: str, sealed: str) -> bool:
    """Replace a stored TOTP secret by its newly sealed form, unless it changed meanwhile."""
    status = await pool.execute(
        "UPDATE users SET totp_secret = $3 WHERE username = $1 AND totp_secret = $2", username, stored, sealed
    )
    return bool(status == "UPDATE 1")


async def use_totp_step(pool: asyncpg.Pool, username: str, step: int, enable: bool = False) -> bool:
    """Accept a code of time step `step` once (and enable the factor); False if that step was used."""
    status = await pool.execute(
        "UPDATE users SET totp_last_step = $2, totp_enabled = totp_enabled OR $3"
        " WHERE username = $1 AND totp_secret IS NOT NULL"
        " AND (totp_last_step IS NULL OR totp_last_step < $2)",
        username, step, enable,
    )
    return bool(status.endswith(" 1"))


# -- refresh tokens ------------------------------------------------------------------------------


async def store_refresh(
    pool: asyncpg.Pool, jti: str, username: str, family: str, expires_at: datetime
) -> None:
    """Remember an issued refresh token so it can be used exactly once."""
    await pool.execute(
        "INSERT INTO refresh_tokens (jti, username, family, expires_at) VALUES ($1, $2, $3, $4)",
        jti, username, family, expires_at,
    )


async def use_refresh(pool: asyncpg.Pool, jti: str, now: datetime) -> str | None:
    """Consume a refresh token; returns its family, or None (and revokes the family) if it was reused."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE refresh_tokens SET used_at = $2 WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL"
            " AND expires_at > $2 RETURNING family", jti, now,
        )
        if row is not None:
            return str(row["family"])
        # A second use of one token means it leaked: end every session descended from that login.
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE revoked_at IS NULL"
            " AND family = (SELECT family FROM refresh_tokens WHERE jti = $1)", jti, now,
        )
        return None


async def revoke_family(pool: asyncpg.Pool, jti: str, now: datetime) -> None:
    """Log out: no refresh token of this login works any more."""
    await pool.execute(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE revoked_at IS NULL"
        " AND family = (SELECT family FROM refresh_tokens WHERE jti = $1)", jti, now,
    )
