"""Password hashing (argon2id) and signed access/refresh tokens (JWT, HS256) with an injectable clock."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from emwatch.settings import Settings

log = logging.getLogger(__name__)
ALGORITHM = "HS256"
Clock = Callable[[], float]  # epoch seconds

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """An argon2id hash with a random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether the password matches (constant effort whether or not the user exists)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class InvalidToken(Exception):
    """Missing, malformed, expired, or of the wrong kind."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says."""

    username: str
    role: str
    jurisdiction_id: str | None
    kind: str  # access | refresh
    jti: str
    expires: float
    family: str | None = None


class TokenIssuer:
    """Issues and verifies tokens; `clock` decides both issue time and expiry checks."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        if settings.jwt_secret is None:
            log.warning("EMWATCH_JWT_SECRET unset: a random key; every login ends when the service stops")
            self._key = secrets.token_bytes(32)
        else:
            self._key = settings.jwt_secret.get_secret_value().encode()
        self.access_ttl = settings.access_token_ttl_s
        self.refresh_ttl = settings.refresh_token_ttl_s
        self.clock = clock

    def issue(self, user: dict[str, Any], kind: str, family: str | None = None) -> tuple[str, Claims]:
        """A signed token of `kind` for a user row; refresh tokens carry their login's family."""
        now = self.clock()
        ttl = self.access_ttl if kind == "access" else self.refresh_ttl
        claims = Claims(user["username"], user["role"], user["jurisdiction_id"], kind,
                        secrets.token_urlsafe(16), now + ttl, family)
        payload: dict[str, Any] = {
            "sub": claims.username, "role": claims.role, "jur": claims.jurisdiction_id, "typ": kind,
            "jti": claims.jti, "iat": int(now), "exp": int(claims.expires),
        }
        if family is not None:
            payload["fam"] = family
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims

    def verify(self, token: str, kind: str) -> Claims:
        """The claims of a valid, unexpired token of `kind`; raises InvalidToken otherwise."""
        try:
            # Time claims are checked against our clock (not PyJWT's wall clock) so tests can move time.
            payload = jwt.decode(token, self._key, algorithms=[ALGORITHM], options={
                "verify_exp": False, "verify_iat": False, "verify_nbf": False,
                "require": ["sub", "typ", "jti", "exp"]})
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(str(exc)) from exc
        if payload["typ"] != kind:
            raise InvalidToken(f"not an {kind} token")
        if not isinstance(payload["exp"], int | float) or payload["exp"] <= self.clock():
            raise InvalidToken("token expired")
        return Claims(payload["sub"], payload.get("role", ""), payload.get("jur"), kind, payload["jti"],
                      float(payload["exp"]), payload.get("fam"))
