-- Proximity rules: victim devices (a moving exclusion circle around a protected person) and
-- subjects forbidden to meet each other (禁止接触特定的人).

ALTER TABLE devices DROP CONSTRAINT devices_kind_check;
ALTER TABLE devices
    ADD CONSTRAINT devices_kind_check CHECK (kind IN ('ankle', 'wrist', 'phone', 'victim')),
    ADD COLUMN protects_subject_id text REFERENCES subjects (id),
    -- A victim's device belongs to nobody supervised; it names the subject it keeps away.
    ADD CONSTRAINT devices_victim_check CHECK (
        (kind = 'victim') = (protects_subject_id IS NOT NULL) AND (kind <> 'victim' OR subject_id IS NULL)
    );
CREATE INDEX devices_protects_idx ON devices (protects_subject_id) WHERE protects_subject_id IS NOT NULL;

-- Unordered pair: stored once with subject_a < subject_b.
CREATE TABLE subject_contact_bans (
    subject_a    text NOT NULL REFERENCES subjects (id),
    subject_b    text NOT NULL REFERENCES subjects (id),
    radius_m     double precision NOT NULL CHECK (radius_m > 0 AND radius_m <= 50000),
    min_seconds  double precision NOT NULL DEFAULT 0 CHECK (min_seconds >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_a, subject_b),
    CHECK (subject_a < subject_b)
);
CREATE INDEX subject_contact_bans_b_idx ON subject_contact_bans (subject_b);
CREATE TRIGGER subject_contact_bans_changed AFTER INSERT OR UPDATE OR DELETE ON subject_contact_bans
    FOR EACH STATEMENT EXECUTE FUNCTION emwatch_notify_config();
