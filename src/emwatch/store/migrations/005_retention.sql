-- Retention: old fixes are purged (`emwatch purge`) unless an alert under legal hold needs them.

-- Days to keep fixes of subjects in this jurisdiction (and its children without their own value);
-- NULL: inherit from the parent, at the top the service setting EMWATCH_RETENTION_DAYS.
ALTER TABLE jurisdictions ADD COLUMN retention_days integer CHECK (retention_days > 0);

-- An alert under legal hold keeps its subject's fixes around the episode, whatever their age.
ALTER TABLE alerts ADD COLUMN legal_hold boolean NOT NULL DEFAULT false;
CREATE INDEX alerts_legal_hold_idx ON alerts (subject_id) WHERE legal_hold;
