-- Severity per jurisdiction: overrides of the built-in default (alerts/severity.py) for one
-- (rule, risk level). An override applies to the jurisdiction and everything below it; the nearest
-- one on a subject's jurisdiction path wins.

CREATE TABLE severity_overrides (
    jurisdiction_id  text NOT NULL REFERENCES jurisdictions (id) ON DELETE CASCADE,
    rule             text NOT NULL,
    risk_level       text NOT NULL CHECK (risk_level IN ('high', 'medium', 'low')),
    severity         text NOT NULL CHECK (severity IN ('critical', 'serious', 'warning')),
    updated_by       text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (jurisdiction_id, rule, risk_level)
);

CREATE TRIGGER severity_overrides_changed AFTER INSERT OR UPDATE OR DELETE ON severity_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION emwatch_notify_config();
