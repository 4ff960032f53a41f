-- Each zone's geometry also as WKB, the service's fast path at startup: shapely parses 1.75M WKB
-- geometries ~20x faster than the same GeoJSON text (benchmarks/startup.py). The jsonb `geometry`
-- stays the source of truth; a row without WKB is read from its GeoJSON. The WKB is only written from
-- a geometry that passed every zone check (zone_rows.zone_row of a checked Zone, backfill_zone_wkb), so
-- the load looks for damage in it, not for validity again (geojson_bulk.geometries_from_wkb).
ALTER TABLE zones ADD COLUMN geometry_wkb bytea;

-- A writer that changes `geometry` without writing the WKB too (plain SQL, an older tool) would leave
-- a stale one behind: drop it, so that row is read from its GeoJSON until rewritten.
CREATE FUNCTION emwatch_zone_wkb_follows_geometry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.geometry IS DISTINCT FROM OLD.geometry AND NEW.geometry_wkb IS NOT DISTINCT FROM OLD.geometry_wkb THEN
        NEW.geometry_wkb := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER zones_wkb_follows_geometry BEFORE UPDATE ON zones
    FOR EACH ROW EXECUTE FUNCTION emwatch_zone_wkb_follows_geometry();
