"""What a team would build instead of the vectorized engine: a naive shapely loop, and PostGIS.

Both answer the same question as RuleEngine + EpisodeBook for a batch: for every fix, is its subject
inside each of its own zones (county + own), and which shared zones of its county contain it.
"""

from __future__ import annotations

import asyncpg
import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from scene import Scene

from emwatch.geo.cells import METRES_PER_DEGREE, haversine_m
from emwatch.geo.zones import Zone


class NaiveLoop:
    """Per fix: a shapely Point, unprepared `.contains` over the subject's zones, STRtree for shared ones."""

    def __init__(self, scene: Scene) -> None:
        n_counties = sum(1 for z in scene.zones if z.kind == "inclusion")
        self.by_subject: list[list[Zone]] = [[scene.zones[int(c)]] for c in scene.subject_county]
        index = {s.id: i for i, s in enumerate(scene.subjects)}
        shared: list[Zone] = []
        for z in scene.zones[n_counties:]:
            if z.subject_id is not None:
                self.by_subject[index[z.subject_id]].append(z)
            else:
                shared.append(z)
        self.shared = shared
        # circles are indexed by their centre grown by the radius in degrees of longitude (the
        # shortest degree), so the box holds the whole circle at any latitude
        self.tree = shapely.STRtree([
            z.geometry.buffer(radius_deg(z.radius_m, z.geometry.y)) if z.radius_m else z.geometry
            for z in shared
        ])

    def evaluate(self, subject: NDArray[np.int64], lon: NDArray[np.float64], lat: NDArray[np.float64]) -> int:
        """Number of (fix, zone) hits; the loop a first version would have."""
        hits = 0
        for s, x, y in zip(subject.tolist(), lon.tolist(), lat.tolist(), strict=True):
            point = shapely.Point(x, y)
            for z in self.by_subject[s]:
                hits += _inside(z, point, x, y)
            for i in self.tree.query(point).tolist():
                hits += _inside(self.shared[i], point, x, y)
        return hits


def radius_deg(radius_m: ArrayLike, lat: ArrayLike) -> NDArray[np.float64]:
    """A radius in metres as degrees of longitude at `lat` (longer than it is in latitude), padded 1%."""
    lat_rad = np.radians(np.asarray(lat, dtype=np.float64))
    out: NDArray[np.float64] = 1.01 * np.asarray(radius_m, dtype=np.float64) / (
        METRES_PER_DEGREE * np.cos(lat_rad)
    )
    return out


def _inside(z: Zone, point: shapely.Point, x: float, y: float) -> bool:
    if z.radius_m is not None:
        return bool(float(haversine_m(y, x, z.geometry.y, z.geometry.x)) <= z.radius_m)
    return bool(z.geometry.contains(point))


_SCHEMA = """
DROP TABLE IF EXISTS bench_zones, bench_subject_zones;
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE TABLE bench_zones (
    id int PRIMARY KEY, county int, shared bool NOT NULL, radius_m float8,
    geom geometry(Geometry, 4326) NOT NULL,   -- polygon, or the centre of a circle
    bbox geometry(Polygon, 4326) NOT NULL      -- what the GiST index holds (circles: grown by radius)
);
CREATE TABLE bench_subject_zones (subject int NOT NULL, zone int NOT NULL);
"""
_INDEXES = """
CREATE INDEX ON bench_zones USING gist (bbox) WHERE shared;
CREATE INDEX ON bench_subject_zones (subject);
ANALYZE bench_zones; ANALYZE bench_subject_zones;
"""
# One statement per batch: the fixes arrive as arrays; own zones by subject, shared ones by GiST.
QUERY = """
WITH p AS (
    SELECT i, subj, county, ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS g
    FROM unnest($1::int[], $2::int[], $3::int[], $4::float8[], $5::float8[]) AS f(i, subj, county, lon, lat)
)
SELECT p.i, z.id,
       CASE WHEN z.radius_m IS NULL THEN ST_Contains(z.geom, p.g)
            ELSE ST_DWithin(z.geom::geography, p.g::geography, z.radius_m, false) END AS inside
FROM p JOIN bench_subject_zones sz ON sz.subject = p.subj JOIN bench_zones z ON z.id = sz.zone
UNION ALL
SELECT p.i, z.id, true
FROM p JOIN bench_zones z ON z.shared AND z.bbox && p.g AND z.county = p.county
WHERE CASE WHEN z.radius_m IS NULL THEN ST_Contains(z.geom, p.g)
           ELSE ST_DWithin(z.geom::geography, p.g::geography, z.radius_m, false) END
"""


async def load_postgis(conn: asyncpg.Connection, scene: Scene) -> None:
    """Zones into GiST-indexed tables, binary COPY of WKB."""
    await conn.execute(_SCHEMA)
    n_counties = sum(1 for z in scene.zones if z.kind == "inclusion")
    subject_index = {s.id: i for i, s in enumerate(scene.subjects)}
    county_of = {f"county-{c}": c for c in range(n_counties)}
    geoms = [z.geometry for z in scene.zones]
    radius = np.array([z.radius_m or 0.0 for z in scene.zones])
    centre_lat = np.array([z.geometry.y if z.radius_m else 0.0 for z in scene.zones])
    boxes = shapely.envelope(shapely.buffer(geoms, radius_deg(radius, centre_lat)))
    wkb, bbox_wkb = shapely.to_wkb(geoms, include_srid=False), shapely.to_wkb(boxes)
    rows = []
    links: list[tuple[int, int]] = []
    for i, z in enumerate(scene.zones):
        county = county_of.get(z.jurisdiction_id or "")
        rows.append((i, county, z.subject_id is None and i >= n_counties, z.radius_m, wkb[i], bbox_wkb[i]))
        if z.subject_id is not None:
            links.append((subject_index[z.subject_id], i))
    links += [(s, int(c)) for s, c in enumerate(scene.subject_county.tolist())]
    await conn.execute("CREATE TEMP TABLE zin (id int, county int, shared bool, r float8, g bytea, b bytea)")
    await conn.copy_records_to_table("zin", records=rows)
    await conn.execute(
        "INSERT INTO bench_zones SELECT id, county, shared, r, ST_GeomFromWKB(g, 4326),"
        " ST_GeomFromWKB(b, 4326) FROM zin; DROP TABLE zin"
    )
    await conn.copy_records_to_table("bench_subject_zones", records=links)
    await conn.execute(_INDEXES)


async def postgis_evaluate(
    conn: asyncpg.Connection, subject: NDArray[np.int64], county: NDArray[np.int64],
    lon: NDArray[np.float64], lat: NDArray[np.float64],
) -> int:
    """Number of (fix, zone) hits for one batch, computed by PostGIS."""
    rows = await conn.fetch(
        QUERY, np.arange(len(subject)).tolist(), subject.tolist(), county.tolist(), lon.tolist(), lat.tolist()
    )
    return sum(1 for r in rows if r["inside"])
