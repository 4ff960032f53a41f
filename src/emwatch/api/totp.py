"""Optional TOTP second factor (RFC 6238): enrol, confirm with a code, and check codes at login."""

from __future__ import annotations

import logging
from typing import Any

import pyotp
from fastapi import APIRouter, HTTPException

from emwatch.api.auth import Admin, Svc, User, audit
from emwatch.api.deps import Services
from emwatch.api.schemas import TotpCodeIn
from emwatch.api.totp_seal import SealError
from emwatch.store import users

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api")
ISSUER = "emwatch"
VALID_WINDOW = 1  # one 30 s step either side: phones' clocks drift


def stored_secret(svc: Services, stored: str) -> str:
    """The secret behind a stored (possibly sealed) value; 503 when this service lacks its key."""
    try:
        return svc.totp.open(stored)
    except SealError as exc:
        log.error("cannot check a TOTP code: %s", exc)
        raise HTTPException(503, f"{exc}: the service is misconfigured") from None


async def reseal_if_due(svc: Services, username: str, stored: str) -> None:
    """After a good code: seal a secret stored unsealed or under an older key (key rotation)."""
    if svc.totp.needs_reseal(stored):
        await users.reseal_totp_secret(svc.pool, username, stored, svc.totp.seal(svc.totp.open(stored)))


def matching_step(svc: Services, stored: str, code: str) -> int | None:
    """The time step `code` belongs to (service clock ± VALID_WINDOW), or None if it matches none."""
    try:
        totp = pyotp.TOTP(stored_secret(svc, stored))
        return totp.verify_and_get_timecode(code, for_time=svc.clock(), valid_window=VALID_WINDOW)
    except pyotp.OTPVerificationError:
        return None


async def check_code(svc: Services, user: dict[str, Any], code: str | None) -> str | None:
    """At login of a user with TOTP enabled: None when `code` is valid and unused, else the reason."""
    if code is None:
        return "totp code required"
    step = matching_step(svc, user["totp_secret"], code)
    # A code is accepted once: a phished or shoulder-surfed code cannot be replayed in its window.
    if step is None or not await users.use_totp_step(svc.pool, user["username"], step):
        return "wrong or reused totp code"
    await reseal_if_due(svc, user["username"], user["totp_secret"])
    return None


@router.post("/auth/totp/enroll")
async def enroll(svc: Svc, user: User) -> dict[str, str]:
    """A new secret (pending until confirmed) and its otpauth:// URI for an authenticator app's QR code."""
    secret = pyotp.random_base32()
    if not await users.set_totp_secret(svc.pool, user.username, svc.totp.seal(secret)):
        raise HTTPException(409, "TOTP is enabled already; an admin must reset it first")
    await audit(svc, user, "totp.enroll", "user", user.username)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)
    return {"secret": secret, "otpauth_uri": uri}


@router.post("/auth/totp/confirm")
async def confirm(body: TotpCodeIn, svc: Svc, user: User) -> dict[str, bool]:
    """Enable TOTP with a code from the enrolled authenticator; from now on login needs a code too."""
    row = await users.get_user(svc.pool, user.username)
    if row is None or row["totp_secret"] is None:
        raise HTTPException(409, "enrol first: POST /api/auth/totp/enroll")
    if row["totp_enabled"]:
        raise HTTPException(409, "TOTP is enabled already")
    step = matching_step(svc, row["totp_secret"], body.code)
    if step is None or not await users.use_totp_step(svc.pool, user.username, step, enable=True):
        await audit(svc, user, "totp.confirm", "user", user.username, outcome="denied")
        raise HTTPException(422, "wrong totp code")
    await audit(svc, user, "totp.confirm", "user", user.username)
    return {"totp_enabled": True}


@router.delete("/users/{username}/totp", status_code=204)
async def reset(username: str, svc: Svc, user: Admin) -> None:
    """An admin removes a user's second factor (a lost phone); the user may enrol again."""
    if not await users.set_totp_secret(svc.pool, username, None):
        raise HTTPException(404, f"no user {username!r}")
    await audit(svc, user, "totp.reset", "user", username)
