-- Officer notification preferences and agency webhooks, now set over the API (issue 7).

-- An officer picks among the channels that reach a person; webhooks are registered separately.
ALTER TABLE notify_preferences
    ADD CONSTRAINT notify_preferences_channels_check CHECK (channels <@ ARRAY['webpush', 'mqtt']::text[]),
    ADD CONSTRAINT notify_preferences_quiet_check CHECK ((quiet_start IS NULL) = (quiet_end IS NULL)),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_by text;

ALTER TABLE webhooks ADD COLUMN created_by text;
