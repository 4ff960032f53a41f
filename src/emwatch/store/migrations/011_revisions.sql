-- Late fixes revise an alert's event-time bounds (docs/rules.md, "reorder horizon"): a `revised` alert
-- event carries the corrected opened_at/cleared_at it applied, so a feed replay shows what the live
-- feed showed. NULL for every other event type (their details come from the alert row).
ALTER TABLE alert_events ADD COLUMN data jsonb;
