-- Foundation schema: who is supervised, with which devices and zones; every fix, event and alert.

CREATE TABLE jurisdictions (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('province', 'city', 'district', 'office')),
    parent_id   text REFERENCES jurisdictions (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subjects (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    jurisdiction_id  text NOT NULL REFERENCES jurisdictions (id),
    risk_level       text NOT NULL DEFAULT 'medium' CHECK (risk_level IN ('high', 'medium', 'low')),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'released')),
    groups           text[] NOT NULL DEFAULT '{}',
    timezone         text NOT NULL DEFAULT 'Asia/Shanghai',
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id          text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('ankle', 'wrist', 'phone')),
    subject_id  text REFERENCES subjects (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_subject_idx ON devices (subject_id);

CREATE TABLE zones (
    id               text PRIMARY KEY,
    name             text NOT NULL DEFAULT '',
    kind             text NOT NULL CHECK (kind IN ('inclusion', 'exclusion')),
    geometry         jsonb NOT NULL,            -- GeoJSON geometry, [lon, lat]
    radius_m         double precision,          -- set for circles (geometry is the centre Point)
    subject_id       text REFERENCES subjects (id),
    group_id         text,
    jurisdiction_id  text REFERENCES jurisdictions (id),
    schedule         jsonb,
    properties       jsonb NOT NULL DEFAULT '{}',
    version          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(subject_id, group_id, jurisdiction_id) = 1)
);

-- One row per (device, ts): a redelivered QoS 1 fix is stored once.
CREATE TABLE fixes (
    device_id    text NOT NULL,
    ts           timestamptz NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    acc          real,
    src          text NOT NULL DEFAULT 'gps',
    batt         smallint,
    seq          bigint,
    h3           bigint NOT NULL,
    subject_id   text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, ts)
);
CREATE INDEX fixes_ts_brin ON fixes USING brin (ts);
CREATE INDEX fixes_subject_ts_idx ON fixes (subject_id, ts);

CREATE TABLE device_events (
    device_id    text NOT NULL,
    ts           timestamptz NOT NULL,
    type         text NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, ts, type)
);

CREATE TABLE alerts (
    id            bigserial PRIMARY KEY,
    rule          text NOT NULL,
    subject_id    text NOT NULL REFERENCES subjects (id),
    device_id     text,
    zone_id       text,
    severity      text NOT NULL CHECK (severity IN ('critical', 'serious', 'warning')),
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cleared')),
    opened_at     timestamptz NOT NULL,
    cleared_at    timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by text,
    lat           double precision,
    lon           double precision,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- At most one live episode per (subject, rule, zone): the database enforces "no alert storms" too.
CREATE UNIQUE INDEX alerts_one_open_episode ON alerts (subject_id, rule, coalesce(zone_id, ''))
    WHERE cleared_at IS NULL;
CREATE INDEX alerts_subject_idx ON alerts (subject_id, opened_at);

-- The ordered history every feed client resumes from: seq is assigned under an advisory lock at
-- commit time, so a reader never sees seq N+1 before N is committed.
CREATE TABLE alert_events (
    seq         bigint PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts (id),
    type        text NOT NULL,
    ts          timestamptz NOT NULL,
    lat         double precision,
    lon         double precision,
    actor       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id);

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    reason       text NOT NULL
);

-- Registry changes wake the pipeline so it reloads devices, subjects and zones.
CREATE FUNCTION emwatch_notify_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('emwatch_config', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER jurisdictions_changed AFTER INSERT OR UPDATE OR DELETE ON jurisdictions
    FOR EACH STATEMENT EXECUTE FUNCTION emwatch_notify_config();
CREATE TRIGGER subjects_changed AFTER INSERT OR UPDATE OR DELETE ON subjects
    FOR EACH STATEMENT EXECUTE FUNCTION emwatch_notify_config();
CREATE TRIGGER devices_changed AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION emwatch_notify_config();
CREATE TRIGGER zones_changed AFTER INSERT OR UPDATE OR DELETE ON zones
    FOR EACH STATEMENT EXECUTE FUNCTION emwatch_notify_config();
