"""TotpSealer: secrets sealed with the newest key, opened with any configured one, refused otherwise."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from emwatch.api.totp_seal import SEALED_PREFIX, SealError, TotpSealer

SECRET = "JBSWY3DPEHPK3PXP"


def _key() -> str:
    return Fernet.generate_key().decode()


def test_a_sealed_secret_hides_the_secret_and_opens_back_to_it() -> None:
    sealer = TotpSealer(SecretStr(_key()))
    stored = sealer.seal(SECRET)
    assert stored.startswith(SEALED_PREFIX) and SECRET not in stored
    assert sealer.open(stored) == SECRET
    assert sealer.seal(SECRET) != stored  # a fresh IV each time: equal secrets don't look equal
    assert not sealer.needs_reseal(stored)


def test_rotation_opens_with_an_older_key_and_asks_for_a_reseal_with_the_newest() -> None:
    old, new = _key(), _key()
    stored = TotpSealer(SecretStr(old)).seal(SECRET)
    rotated = TotpSealer(SecretStr(f"{new}, {old}"))
    assert rotated.open(stored) == SECRET
    assert rotated.needs_reseal(stored)
    assert not rotated.needs_reseal(rotated.seal(SECRET))


def test_an_unsealed_secret_is_read_as_it_is_and_sealed_when_a_key_exists() -> None:
    assert TotpSealer(SecretStr(_key())).open(SECRET) == SECRET
    assert TotpSealer(SecretStr(_key())).needs_reseal(SECRET)
    unkeyed = TotpSealer(None)
    assert unkeyed.seal(SECRET) == SECRET and not unkeyed.needs_reseal(SECRET)


@pytest.mark.parametrize("keys", [None, "other"])
def test_a_secret_sealed_with_a_key_not_configured_is_a_seal_error(keys: str | None) -> None:
    stored = TotpSealer(SecretStr(_key())).seal(SECRET)
    sealer = TotpSealer(SecretStr(_key()) if keys else None)
    with pytest.raises(SealError, match="EMWATCH_TOTP_KEYS"):
        sealer.open(stored)


def test_a_malformed_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="EMWATCH_TOTP_KEYS") as info:
        TotpSealer(SecretStr("not-a-fernet-key"))
    assert "not-a-fernet-key" not in str(info.value)
