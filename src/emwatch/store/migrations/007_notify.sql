-- Officer notifications: an outbox written in the alert's own transaction, and where to deliver it.

-- A browser's or PWA's Web Push subscription (RFC 8030), owned by one user.
CREATE TABLE push_subscriptions (
    id          bigserial PRIMARY KEY,
    username    text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    endpoint    text NOT NULL UNIQUE,
    p256dh      text NOT NULL,   -- the user agent's ECDH public key, base64url (RFC 8291)
    auth        text NOT NULL,   -- the shared authentication secret, base64url
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user_idx ON push_subscriptions (username);

-- Another agency system that receives every alert of a jurisdiction subtree (NULL: all).
CREATE TABLE webhooks (
    id               bigserial PRIMARY KEY,
    url              text NOT NULL,
    secret           text NOT NULL,   -- HMAC-SHA256 key of the X-Emwatch-Signature header
    jurisdiction_id  text REFERENCES jurisdictions (id),
    min_severity     text NOT NULL DEFAULT 'warning' CHECK (min_severity IN ('critical', 'serious', 'warning')),
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- An officer's choices; without a row: every severity, every channel, no quiet hours.
CREATE TABLE notify_preferences (
    username      text PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
    min_severity  text NOT NULL DEFAULT 'warning' CHECK (min_severity IN ('critical', 'serious', 'warning')),
    channels      text[] NOT NULL DEFAULT '{webpush,mqtt}',
    quiet_start   time,           -- local wall-clock time in `timezone`; critical alerts ignore it
    quiet_end     time,
    timezone      text NOT NULL DEFAULT 'Asia/Shanghai'
);

-- One row per (alert event, recipient, channel, target): its delivery state lives here, so a restarted
-- sender resumes exactly where the last one stopped.
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    alert_seq        bigint NOT NULL REFERENCES alert_events (seq),
    alert_id         bigint NOT NULL REFERENCES alerts (id),
    username         text,          -- NULL for a webhook
    channel          text NOT NULL CHECK (channel IN ('webpush', 'mqtt', 'webhook')),
    target           text NOT NULL DEFAULT '',   -- push_subscriptions.id / webhooks.id; '' for mqtt
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'delivered', 'failed', 'acknowledged')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,   -- for 'sent' (in flight): when its lease runs out
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    delivered_at     timestamptz,
    acknowledged_at  timestamptz,
    UNIQUE (alert_seq, channel, target, username)
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE status IN ('pending', 'sent');
CREATE INDEX notifications_alert_idx ON notifications (alert_id);
