-- A subject's fixes are found through the devices that carried them, on the fixes primary key
-- (device_id, ts), instead of a second btree on every stored fix: that index cost about as much
-- PostgreSQL CPU per fix as the rest of the COPY together (benchmarks/bench_writer.py).

-- Every (subject, device) pair a fix can carry: a fix's subject_id is its device's subject_id when it
-- was evaluated or stored, and every assignment is recorded here as the devices table takes it.
-- Never deleted: a device reassigned keeps leading to its earlier subject's fixes.
CREATE TABLE subject_devices (
    subject_id  text NOT NULL,
    device_id   text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, device_id)
);

CREATE FUNCTION emwatch_record_assignment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.subject_id IS NOT NULL THEN
        INSERT INTO subject_devices (subject_id, device_id) VALUES (NEW.subject_id, NEW.id)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_assigned AFTER INSERT OR UPDATE OF id, subject_id ON devices
    FOR EACH ROW EXECUTE FUNCTION emwatch_record_assignment();

-- Existing data: current assignments, and every pair already stored in fixes (earlier assignments,
-- fixes inserted by hand); one full read of fixes, once.
INSERT INTO subject_devices (subject_id, device_id)
SELECT subject_id, id FROM devices WHERE subject_id IS NOT NULL
UNION
SELECT DISTINCT subject_id, device_id FROM fixes WHERE subject_id IS NOT NULL
ON CONFLICT DO NOTHING;

DROP INDEX fixes_subject_ts_idx;
-- A device's fixes nearly all carry one subject: without this the planner takes `subject_id = x` as
-- rare among a device's fixes and reads all of them to sort, instead of walking the key backwards to
-- the newest one (scoped.latest_positions: 3.4 s vs 37 ms for 1,226 subjects with 1M fixes).
CREATE STATISTICS fixes_device_subject (dependencies) ON device_id, subject_id FROM fixes;
ANALYZE fixes;
