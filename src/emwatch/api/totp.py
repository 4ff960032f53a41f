"""Optional TOTP second factor (RFC 6238): enrol, confirm with a code, and check codes at login."""

from __future__ import annotations

from typing import Any

import pyotp
from fastapi import APIRouter, HTTPException

from emwatch.api.auth import Admin, Svc, User, audit
from emwatch.api.deps import Services
from emwatch.api.schemas import TotpCodeIn
from emwatch.store import users

router = APIRouter(prefix="/api")
ISSUER = "emwatch"
VALID_WINDOW = 1  # one 30 s step either side: phones' clocks drift


def matching_step(svc: Services, secret: str, code: str) -> int | None:
    """The time step `code` belongs to (service clock ± VALID_WINDOW), or None if it matches none."""
    try:
        totp = pyotp.TOTP(secret)
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
    return None


@router.post("/auth/totp/enroll")
async def enroll(svc: Svc, user: User) -> dict[str, str]:
    """A new secret (pending until confirmed) and its otpauth:// URI for an authenticator app's QR code."""
    secret = pyotp.random_base32()
    if not await users.set_totp_secret(svc.pool, user.username, secret):
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
