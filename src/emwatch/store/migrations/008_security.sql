-- Optional TOTP second factor (RFC 6238). The secret is pending until a code proves the user's
-- authenticator has it (totp_enabled); the last accepted time step makes every code single use.
ALTER TABLE users
    ADD COLUMN totp_secret     text,
    ADD COLUMN totp_enabled    boolean NOT NULL DEFAULT false,
    ADD COLUMN totp_last_step  bigint,
    ADD CHECK (NOT totp_enabled OR totp_secret IS NOT NULL);
