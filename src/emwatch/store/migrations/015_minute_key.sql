-- Fixes keyed by the minute first: (minute, device_id, ts) instead of (device_id, ts).
--
-- Under (device_id, ts) every device keeps a btree leaf page of its own hot: 700,000 of them (~5.6 GB)
-- at national scale, more than shared_buffers holds, so each stored fix read and wrote a page that had
-- been evicted. PostgreSQL CPU per fix grew with the history, 6.0 -> 15.9 us at 21M rows, capping one
-- COPY stream near 50k fixes/s. Led by the minute, the pages written are the current minute's only:
-- 6.7 -> 8.4 us at 21M rows (benchmarks/bench_history.py, RESULTS.md session 9). The key says the same
-- thing (the minute is a function of ts), so redelivered fixes still conflict with themselves.
--
-- A device's fixes are then read minute by minute (`minute = ANY(...)`, one descent each), and
-- `device_minutes` says which minutes hold some: the first and newest minute of each (subject, device)
-- pair's fixes (it replaces migration 012's subject_devices). The newest fix of a pair is the last one
-- of its newest minute.
-- This migration rewrites the fixes table once.

-- Minutes since 2000-01-01 UTC; timestamptz - timestamptz is an interval, so this is immutable.
CREATE FUNCTION emwatch_minute(ts timestamptz) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN floor(extract(epoch FROM (ts - timestamptz '2000-01-01 00:00:00+00')) / 60)::int;

-- The minutes from `first` to `last`, for `minute = ANY(...)`: one index descent per minute.
CREATE FUNCTION emwatch_minutes(first int, last int) RETURNS int[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(SELECT generate_series(first, last));

ALTER TABLE fixes ADD COLUMN minute int NOT NULL GENERATED ALWAYS AS (emwatch_minute(ts)) STORED;
ALTER TABLE fixes DROP CONSTRAINT fixes_pkey;
ALTER TABLE fixes ADD PRIMARY KEY (minute, device_id, ts);

-- subject_id '' for fixes stored without a subject (a device not assigned to anyone).
CREATE TABLE device_minutes (
    subject_id    text NOT NULL,
    device_id     text COLLATE "C" NOT NULL,
    first_minute  int NOT NULL,
    minute        int NOT NULL,  -- the newest
    PRIMARY KEY (subject_id, device_id)
);

-- The pairs of the fixes stored in minutes `first` to `last`, noted; the service notes its own as it
-- writes them (store/minute_notes.py), whatever else writes fixes calls this. Returns the pairs noted.
CREATE FUNCTION emwatch_note_minutes(first int, last int) RETURNS bigint LANGUAGE sql AS $$
    WITH noted AS (
        INSERT INTO device_minutes AS m (subject_id, device_id, first_minute, minute)
        SELECT coalesce(subject_id, ''), device_id, min(minute), max(minute) FROM fixes
        WHERE minute BETWEEN first AND last
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (subject_id, device_id) DO UPDATE
            SET first_minute = least(m.first_minute, excluded.first_minute),
                minute = greatest(m.minute, excluded.minute)
            WHERE excluded.minute > m.minute OR excluded.first_minute < m.first_minute
        RETURNING 1
    )
    SELECT count(*) FROM noted
$$;

SELECT emwatch_note_minutes(-2147483648, 2147483647);

-- A subject's devices are now found through device_minutes: the assignment record of migration 012 and
-- the statistics that steered the former newest-fix query are no longer read.
DROP TRIGGER devices_assigned ON devices;
DROP FUNCTION emwatch_record_assignment();
DROP TABLE subject_devices;
DROP STATISTICS fixes_device_subject;
ANALYZE fixes;
