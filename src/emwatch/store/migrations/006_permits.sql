-- Leave permits (外出请假): a time window and destination zones replacing the usual inclusion zones.
-- Destination zones carry properties.role = 'permit_destination': never enforced on their own.

CREATE TABLE permits (
    id            bigserial PRIMARY KEY,
    subject_id    text NOT NULL REFERENCES subjects (id),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    grace_s       integer NOT NULL DEFAULT 3600 CHECK (grace_s >= 0),
    zone_ids      text[] NOT NULL CHECK (cardinality(zone_ids) > 0),
    reason        text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'approved', 'revoked')),
    requested_by  text NOT NULL,
    approved_by   text,
    approved_at   timestamptz,
    revoked_by    text,
    revoked_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX permits_subject_idx ON permits (subject_id, starts_at);

CREATE TRIGGER permits_changed AFTER INSERT OR UPDATE OR DELETE ON permits
    FOR EACH STATEMENT EXECUTE FUNCTION emwatch_notify_config();
