-- The full rule set: alert confidence (possible → confirmed), suspect fixes.

ALTER TABLE alerts ADD COLUMN confidence text NOT NULL DEFAULT 'confirmed'
    CHECK (confidence IN ('possible', 'confirmed'));
ALTER TABLE fixes ADD COLUMN suspect boolean NOT NULL DEFAULT false;
-- A violation found only when buffered fixes arrived after the fact (see docs/rules.md, watermark).
ALTER TABLE alerts ADD COLUMN late boolean NOT NULL DEFAULT false;
-- Evidence a rule attached (separation score parts, proximity distances), kept with the alert.
ALTER TABLE alerts ADD COLUMN data jsonb;
