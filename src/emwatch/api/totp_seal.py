"""TOTP secrets sealed at rest: a stolen database dump must not hand out every officer's second factor."""

from __future__ import annotations

import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

log = logging.getLogger(__name__)

SEALED_PREFIX = "fernet:"  # a stored value without it is a secret from before sealing (or with no key)


class SealError(RuntimeError):
    """A stored secret this service cannot open: sealed with a key it was not given."""


class TotpSealer:
    """Seals with the first of the configured Fernet keys, opens with any of them (key rotation)."""

    def __init__(self, keys: SecretStr | None) -> None:
        raw = [k.strip() for k in keys.get_secret_value().split(",") if k.strip()] if keys else []
        try:
            fernets = [Fernet(k) for k in raw]
        except ValueError as exc:  # the message names the problem, never the key
            msg = f"EMWATCH_TOTP_KEYS: each key must be 32 url-safe base64 bytes ({exc})"
            raise ValueError(msg) from None
        self._newest = fernets[0] if fernets else None
        self._fernet = MultiFernet(fernets) if fernets else None
        if self._fernet is None:
            log.warning("EMWATCH_TOTP_KEYS unset: TOTP secrets are stored unsealed")

    @property
    def sealing(self) -> bool:
        """Whether new secrets are sealed (a key is configured)."""
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        """The value to store for `secret`: sealed with the newest key, or as it is when none is set."""
        if self._fernet is None:
            return secret
        return SEALED_PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret behind a stored value; SealError when it is sealed with a key not configured."""
        if not stored.startswith(SEALED_PREFIX):
            return stored
        if self._fernet is None:
            raise SealError("the TOTP secret is sealed, but EMWATCH_TOTP_KEYS is unset")
        try:
            return self._fernet.decrypt(stored[len(SEALED_PREFIX):].encode()).decode()
        except InvalidToken:
            raise SealError("the TOTP secret is sealed with a key not in EMWATCH_TOTP_KEYS") from None

    def needs_reseal(self, stored: str) -> bool:
        """Whether `stored` should be sealed again: unsealed, or sealed with an older key."""
        if self._newest is None:
            return False
        if not stored.startswith(SEALED_PREFIX):
            return True
        try:
            self._newest.decrypt(stored[len(SEALED_PREFIX):].encode())
        except InvalidToken:
            return True
        return False
