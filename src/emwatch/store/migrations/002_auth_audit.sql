-- Users, caseloads, refresh tokens, the append-only audit log, the alert lifecycle and zone history.

CREATE TABLE users (
    username         text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9._@-]{1,64}$'),
    password_hash    text NOT NULL,
    role             text NOT NULL CHECK (role IN ('admin', 'supervisor', 'operator', 'officer')),
    jurisdiction_id  text REFERENCES jurisdictions (id),
    display_name     text NOT NULL DEFAULT '',
    disabled         boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Everyone but an admin works inside one jurisdiction subtree.
    CHECK (role = 'admin' OR jurisdiction_id IS NOT NULL)
);

-- An officer's caseload: the subjects assigned to them personally.
CREATE TABLE caseload (
    officer      text NOT NULL REFERENCES users (username),
    subject_id   text NOT NULL REFERENCES subjects (id),
    assigned_by  text NOT NULL,
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (officer, subject_id)
);
CREATE INDEX caseload_subject_idx ON caseload (subject_id);

-- Refresh tokens are single use: a refresh rotates its jti; a replayed jti revokes the whole family.
CREATE TABLE refresh_tokens (
    jti         text PRIMARY KEY,
    username    text NOT NULL REFERENCES users (username),
    family      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);

-- 全过程留痕: who did or read what, when, from where. Rows are only ever appended.
CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    ts               timestamptz NOT NULL DEFAULT now(),
    actor            text NOT NULL,
    role             text,
    jurisdiction_id  text,          -- the actor's, so a supervisor reads their subtree's trail
    action           text NOT NULL,
    target_type      text,
    target_id        text,
    outcome          text NOT NULL DEFAULT 'ok' CHECK (outcome IN ('ok', 'denied', 'failed')),
    detail           jsonb NOT NULL DEFAULT '{}',
    remote_addr      text,
    user_agent       text
);
CREATE INDEX audit_log_ts_idx ON audit_log (ts);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);

CREATE FUNCTION emwatch_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION emwatch_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION emwatch_audit_append_only();
-- Roles other than the owner (e.g. a read-only reporting role) may at most read and append.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

-- The operator's side of an alert, separate from the episode state (status/cleared_at) the pipeline owns.
ALTER TABLE alerts
    ADD COLUMN lifecycle            text NOT NULL DEFAULT 'open'
        CHECK (lifecycle IN ('open', 'acknowledged', 'resolved')),
    ADD COLUMN resolved_at          timestamptz,
    ADD COLUMN resolved_by          text,
    ADD COLUMN resolution_category  text
        CHECK (resolution_category IN ('true_violation', 'false_alarm', 'technical_fault')),
    ADD COLUMN resolution_note      text,
    ADD COLUMN escalation_level     integer NOT NULL DEFAULT 0,
    ADD COLUMN escalated_to         text,
    ADD COLUMN escalated_at         timestamptz,
    ADD CHECK (lifecycle <> 'resolved' OR (resolution_category IS NOT NULL AND resolution_note <> ''));
UPDATE alerts SET lifecycle = 'acknowledged' WHERE acknowledged_at IS NOT NULL;
CREATE INDEX alerts_unacknowledged_idx ON alerts (opened_at) WHERE lifecycle = 'open';

-- Every version of every zone, so evidence shows the geometry that fired an alert, not today's.
CREATE TABLE zone_versions (
    zone_id      text NOT NULL,
    version      integer NOT NULL,
    kind         text NOT NULL,
    geometry     jsonb NOT NULL,
    radius_m     double precision,
    schedule     jsonb,
    valid_from   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (zone_id, version)
);
INSERT INTO zone_versions (zone_id, version, kind, geometry, radius_m, schedule, valid_from)
    SELECT id, version, kind, geometry, radius_m, schedule, created_at FROM zones;

CREATE FUNCTION emwatch_zone_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO zone_versions (zone_id, version, kind, geometry, radius_m, schedule)
    VALUES (NEW.id, NEW.version, NEW.kind, NEW.geometry, NEW.radius_m, NEW.schedule)
    ON CONFLICT (zone_id, version) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER zones_versioned AFTER INSERT OR UPDATE ON zones
    FOR EACH ROW EXECUTE FUNCTION emwatch_zone_version();
