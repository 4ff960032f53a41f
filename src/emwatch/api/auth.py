"""Who is calling: the bearer token → a Principal with its Scope; role checks; the audit helper."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.requests import HTTPConnection

from emwatch.api.deps import Services, services
from emwatch.api.tokens import InvalidToken
from emwatch.store import audit as audit_store
from emwatch.store import users
from emwatch.store.users import Scope

Svc = Annotated[Services, Depends(services)]
WRITERS = ("admin", "supervisor", "operator")  # may change the registry inside their scope
ALERT_ACTORS = ("admin", "supervisor", "operator", "officer")
AUDIT_READERS = ("admin", "supervisor")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user, what they may see, and where the request came from."""

    username: str
    role: str
    jurisdiction_id: str | None
    scope: Scope
    remote_addr: str | None
    user_agent: str | None
    token_expires: float

    def manages(self, jurisdiction_id: str | None) -> bool:
        """Whether this user may change things registered in `jurisdiction_id`."""
        if self.role == "admin":
            return True
        return self.role in WRITERS and jurisdiction_id in self.scope.jurisdictions


def now_utc(svc: Services) -> datetime:
    """The service clock as an aware datetime."""
    return datetime.fromtimestamp(svc.clock(), tz=UTC)


def bearer_from_headers(conn: HTTPConnection) -> str | None:
    """The token of `Authorization: Bearer <t>`, or of `Sec-WebSocket-Protocol: bearer, <t>`."""
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    offered = [p.strip() for p in conn.headers.get("sec-websocket-protocol", "").split(",")]
    if len(offered) >= 2 and offered[0] == "bearer" and offered[1]:
        return offered[1]
    return None


async def principal_from_token(svc: Services, conn: HTTPConnection, token: str | None) -> Principal:
    """Verify the token and load the user's current row and scope; raises InvalidToken."""
    if token is None:
        raise InvalidToken("missing bearer token")
    claims = svc.tokens.verify(token, "access")
    # The row, not the token, decides role and scope: a disabled or moved user loses access at once.
    user = await users.get_user(svc.pool, claims.username)
    if user is None or user["disabled"]:
        raise InvalidToken("user unknown or disabled")
    scope = await users.scope_of(svc.pool, user["role"], user["username"], user["jurisdiction_id"])
    remote = conn.client.host if conn.client else None
    return Principal(user["username"], user["role"], user["jurisdiction_id"], scope, remote,
                     conn.headers.get("user-agent"), claims.expires)


async def current_user(request: Request, svc: Svc) -> Principal:
    """FastAPI dependency: the authenticated caller, or 401."""
    try:
        return await principal_from_token(svc, request, bearer_from_headers(request))
    except InvalidToken as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


User = Annotated[Principal, Depends(current_user)]


def require(*roles: str) -> Any:
    """A dependency that lets only `roles` through (403 otherwise)."""

    async def check(user: User) -> Principal:
        if user.role not in roles:
            raise HTTPException(403, f"role {user.role!r} may not do this")
        return user

    return Depends(check)


Admin = Annotated[Principal, require("admin")]
AdminOrSupervisor = Annotated[Principal, require(*AUDIT_READERS)]
Writer = Annotated[Principal, require(*WRITERS)]
AlertActor = Annotated[Principal, require(*ALERT_ACTORS)]


async def audit(
    svc: Services, user: Principal, action: str, target_type: str | None = None, target_id: object = None,
    outcome: str = "ok", **detail: Any,
) -> None:
    """Append one audit entry for something `user` did or read."""
    await audit_store.record(svc.pool, audit_store.AuditEntry(
        actor=user.username, action=action, role=user.role, jurisdiction_id=user.jurisdiction_id,
        target_type=target_type, target_id=None if target_id is None else str(target_id), outcome=outcome,
        detail={k: v for k, v in detail.items() if v is not None}, remote_addr=user.remote_addr,
        user_agent=user.user_agent,
    ))


async def denied(svc: Services, user: Principal, action: str, target_type: str, target_id: object,
                 status: int = 404, message: str | None = None) -> HTTPException:
    """Audit a refused access and return the HTTPException to raise (404 hides what is out of scope)."""
    await audit(svc, user, action, target_type, target_id, outcome="denied")
    return HTTPException(status, message or f"no {target_type} {target_id!r}")
