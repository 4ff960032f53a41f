"""Login, token refresh, logout; users (admins) and officers' caseloads; the audit trail (read-only)."""

from __future__ import annotations

import math
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from emwatch.api import totp
from emwatch.api.auth import Admin, AdminOrSupervisor, Principal, Svc, User, Writer, audit, denied, now_utc
from emwatch.api.deps import Services
from emwatch.api.ratelimit import Key, LoginThrottle
from emwatch.api.schemas import CaseloadIn, LoginIn, RefreshIn, UserIn, UserOut, UserPatch
from emwatch.api.tokens import InvalidToken, hash_password, verify_password
from emwatch.store import audit as audit_store
from emwatch.store import repo, scoped, users

router = APIRouter(prefix="/api")


async def _tokens(svc: Services, user: dict[str, Any], family: str) -> dict[str, Any]:
    access, _ = svc.tokens.issue(user, "access")
    refresh, claims = svc.tokens.issue(user, "refresh", family)
    await users.store_refresh(svc.pool, claims.jti, user["username"], family,
                              datetime.fromtimestamp(claims.expires, tz=UTC))
    return {
        "access_token": access, "refresh_token": refresh, "token_type": "bearer",
        "expires_in": svc.tokens.access_ttl,
        "user": {k: user[k] for k in ("username", "role", "jurisdiction_id", "display_name")},
    }


def _anonymous(request: Request, username: str) -> audit_store.AuditEntry:
    return audit_store.AuditEntry(
        actor=username, action="login", remote_addr=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


@router.post("/auth/login")
async def login(body: LoginIn, request: Request, svc: Svc) -> dict[str, Any]:
    """Exchange a username and password (and a TOTP code, once enabled) for an access token and a
    single-use refresh token. Repeated failures lock the username or the address out (429)."""
    throttle: LoginThrottle = request.app.state.login_throttle
    entry = _anonymous(request, body.username)
    keys = throttle.keys(body.username, entry.remote_addr)
    if (wait := throttle.retry_after(keys)) > 0:
        # Checked before the password, so a locked-out guesser learns nothing from further tries.
        await audit_store.record(svc.pool, replace(entry, outcome="denied", detail={"reason": "locked out"}))
        raise HTTPException(429, "too many failed logins, try again later",
                            headers={"Retry-After": str(math.ceil(wait))})
    user = await users.get_user(svc.pool, body.username)
    ok = verify_password(user["password_hash"] if user else None, body.password)
    if user is None or not ok or user["disabled"]:
        reason = "disabled" if user is not None and ok else "bad credentials"
        await _failed(svc, throttle, keys, entry, reason)
        raise HTTPException(401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
    if user["totp_enabled"] and (problem := await totp.check_code(svc, user, body.totp)) is not None:
        if body.totp is None:  # the client's first step: ask for the code, not a failure
            await audit_store.record(svc.pool, replace(entry, outcome="denied", detail={"reason": problem}))
        else:
            await _failed(svc, throttle, keys, entry, problem)
        raise HTTPException(401, problem, headers={"WWW-Authenticate": "Bearer"})
    throttle.succeeded(body.username)
    await audit_store.record(svc.pool, replace(entry, role=user["role"],
                                               jurisdiction_id=user["jurisdiction_id"]))
    return await _tokens(svc, user, secrets.token_urlsafe(12))


async def _failed(svc: Services, throttle: LoginThrottle, keys: list[Key], entry: audit_store.AuditEntry,
                  reason: str) -> None:
    """Count a failed login and audit it, with the lockout it started if any."""
    locked = throttle.failed(keys)
    detail: dict[str, Any] = {"reason": reason, **({"locked_for_s": round(locked)} if locked else {})}
    await audit_store.record(svc.pool, replace(entry, outcome="denied", detail=detail))


@router.post("/auth/refresh")
async def refresh(body: RefreshIn, svc: Svc) -> dict[str, Any]:
    """A new access token and a new refresh token; each refresh token works once."""
    try:
        claims = svc.tokens.verify(body.refresh_token, "refresh")
    except InvalidToken as exc:
        raise HTTPException(401, str(exc)) from exc
    family = await users.use_refresh(svc.pool, claims.jti, now_utc(svc))
    user = await users.get_user(svc.pool, claims.username)
    if family is None or user is None or user["disabled"]:
        raise HTTPException(401, "refresh token used already, revoked, or user disabled")
    return await _tokens(svc, user, family)


@router.post("/auth/logout", status_code=204)
async def logout(body: RefreshIn, user: User, svc: Svc) -> None:
    """End this login: its refresh tokens stop working (access tokens expire on their own)."""
    try:
        claims = svc.tokens.verify(body.refresh_token, "refresh")
    except InvalidToken:
        return
    if claims.username == user.username:
        await users.revoke_family(svc.pool, claims.jti, now_utc(svc))
        await audit(svc, user, "logout")


@router.get("/auth/me")
async def me(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "jurisdiction_id": user.jurisdiction_id,
            "token_expires": user.token_expires}


@router.post("/users", status_code=201, response_model=UserOut)
async def create_user(body: UserIn, svc: Svc, user: Admin) -> dict[str, Any]:
    if body.role != "admin" and body.jurisdiction_id is None:
        raise HTTPException(422, f"a {body.role} needs a jurisdiction_id")
    try:
        row = await users.create_user(svc.pool, body.username, hash_password(body.password), body.role,
                                      body.jurisdiction_id, body.display_name)
    except users.UserExists as exc:
        raise HTTPException(409, str(exc)) from exc
    except users.UnknownReference as exc:
        raise HTTPException(422, f"unknown reference: {exc}") from exc
    await audit(svc, user, "user.create", "user", body.username, role=body.role,
                jurisdiction_id=body.jurisdiction_id)
    return row


@router.get("/users", response_model=list[UserOut])
async def list_users(svc: Svc, user: AdminOrSupervisor) -> list[dict[str, Any]]:
    jurisdictions = None if user.scope.everything else sorted(user.scope.jurisdictions)
    return await users.list_users(svc.pool, jurisdictions)


@router.patch("/users/{username}", response_model=UserOut)
async def update_user(username: str, body: UserPatch, svc: Svc, user: Admin) -> dict[str, Any]:
    row = await users.update_user(svc.pool, username, disabled=body.disabled,
                                  password_hash=hash_password(body.password) if body.password else None)
    if row is None:
        raise HTTPException(404, f"no user {username!r}")
    await audit(svc, user, "user.update", "user", username, disabled=body.disabled,
                password_changed=body.password is not None or None)
    return row


async def _managed_subject(svc: Services, user: Principal, subject_id: str, action: str) -> dict[str, Any]:
    try:
        subject = await scoped.get_subject(svc.pool, user.scope, subject_id)
    except repo.NotFound:
        raise await denied(svc, user, action, "subject", subject_id) from None
    if not user.manages(subject["jurisdiction_id"]):
        raise await denied(svc, user, action, "subject", subject_id, 403, "may not change this subject")
    return subject


@router.get("/subjects/{subject_id}/officers")
async def list_officers(subject_id: str, svc: Svc, user: User) -> list[str]:
    """The officers this subject is assigned to."""
    try:
        await scoped.get_subject(svc.pool, user.scope, subject_id)
    except repo.NotFound:
        raise await denied(svc, user, "caseload.read", "subject", subject_id) from None
    return await users.caseload_of(svc.pool, subject_id)


@router.post("/subjects/{subject_id}/officers", status_code=201)
async def assign_officer(subject_id: str, body: CaseloadIn, svc: Svc, user: Writer) -> dict[str, Any]:
    """Put the subject on an officer's caseload (the officer must work inside the caller's scope)."""
    await _managed_subject(svc, user, subject_id, "caseload.assign")
    officer = await users.get_user(svc.pool, body.officer)
    if officer is None or officer["role"] != "officer" or not user.manages(officer["jurisdiction_id"]):
        raise HTTPException(422, f"{body.officer!r} is not an officer you manage")
    added = await users.assign_caseload(svc.pool, body.officer, subject_id, user.username)
    await audit(svc, user, "caseload.assign", "subject", subject_id, officer=body.officer)
    return {"subject_id": subject_id, "officer": body.officer, "added": added}


@router.delete("/subjects/{subject_id}/officers/{officer}", status_code=204)
async def unassign_officer(subject_id: str, officer: str, svc: Svc, user: Writer) -> None:
    await _managed_subject(svc, user, subject_id, "caseload.unassign")
    if not await users.unassign_caseload(svc.pool, officer, subject_id):
        raise HTTPException(404, f"{officer!r} does not have {subject_id!r}")
    await audit(svc, user, "caseload.unassign", "subject", subject_id, officer=officer)


@router.get("/audit")
async def read_audit(
    svc: Svc,
    user: AdminOrSupervisor,
    actor: str | None = None,
    action: str | None = None,
    target_type: Literal["subject", "alert", "zone", "device", "jurisdiction", "user"] | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1, description="page: entries older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[dict[str, Any]]:
    """The audit trail, newest first; a supervisor reads what users of their subtree did."""
    jurisdictions = None if user.scope.everything else sorted(user.scope.jurisdictions)
    rows = await audit_store.entries(
        svc.pool, jurisdictions=jurisdictions, actor=actor, action=action, target_type=target_type,
        target_id=target_id, since=since, before_id=before_id, limit=limit,
    )
    await audit(svc, user, "audit.read", target_type, target_id, rows=len(rows))
    return rows
