-- Device ids are opaque identifiers, compared and ordered byte by byte (COLLATE "C"), not as words of
-- a language: the (device_id, ts) primary key of fixes is maintained for every stored fix, and a locale
-- comparison (strcoll) per key step cost 7-9 % of PostgreSQL's time per fix under C.UTF-8, more under a
-- real locale (benchmarks/RESULTS.md). Every column holding a device id changes together: `=` between
-- two columns of different collations is an error. Indexes on them are rebuilt; rows are not rewritten.
-- A trigger naming the column (UPDATE OF id) pins its type: it is dropped and made again around the change.
DROP TRIGGER devices_assigned ON devices;
ALTER TABLE devices ALTER COLUMN id TYPE text COLLATE "C";
CREATE TRIGGER devices_assigned AFTER INSERT OR UPDATE OF id, subject_id ON devices
    FOR EACH ROW EXECUTE FUNCTION emwatch_record_assignment();
ALTER TABLE fixes ALTER COLUMN device_id TYPE text COLLATE "C";
ALTER TABLE device_events ALTER COLUMN device_id TYPE text COLLATE "C";
ALTER TABLE alerts ALTER COLUMN device_id TYPE text COLLATE "C";
ALTER TABLE subject_devices ALTER COLUMN device_id TYPE text COLLATE "C";
