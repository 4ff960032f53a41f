"""Generate the fictional Demo County (演示县) geofences in `geofences/demo/`, deterministically.

Run `python geofences/tools/make_demo.py` from the repository root; the output is committed, so this
only needs re-running when the demo geography itself changes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely

CENTRE_LON, CENTRE_LAT = 120.10, 30.30
# Spherical metres per degree (mean Earth radius); the same local frame device_sim uses.
M_PER_DEG_LAT = 6_371_008.8 * math.pi / 180
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(CENTRE_LAT))
OUTLINE_VERTICES = 2_000
OUTLINE_SEED = 20_240_601  # fixed: the committed outline must never change by accident

OUT_DIR = Path(__file__).resolve().parent.parent / "demo"

# (id, name, kind, parent, east km, north km, settlement radius m). Offices are the 司法所 of the towns.
JURISDICTIONS: list[tuple[str, str, str, str | None, float, float, int | None]] = [
    ("demo-city", "Demo City 演示市", "city", None, 38.0, -6.0, None),
    ("demo-county", "Demo County 演示县", "district", "demo-city", 0.3, 0.2, None),
    ("demo-office-chengguan", "Chengguan Office 城关司法所", "office", "demo-county", 0.0, 0.0, 2_600),
    ("demo-office-xishan", "Xishan Office 西山司法所", "office", "demo-county", -11.0, 3.0, 2_000),
    ("demo-office-dongqiao", "Dongqiao Office 东桥司法所", "office", "demo-county", 10.0, -2.0, 2_000),
    ("demo-office-nanhu", "Nanhu Office 南湖司法所", "office", "demo-county", -1.0, -9.0, 1_800),
]


def to_lonlat(east_m: np.ndarray, north_m: np.ndarray) -> np.ndarray:
    """Local metres east/north of the county centre -> (n, 2) [lon, lat] rounded to ~0.1 m."""
    lon = CENTRE_LON + east_m / M_PER_DEG_LON
    lat = CENTRE_LAT + north_m / M_PER_DEG_LAT
    return np.round(np.column_stack([lon, lat]), 6)


def county_outline() -> np.ndarray:
    """A noisy radial outline: an ellipse (40 km x 30 km) bent by low harmonics plus fine jitter.

    Star-shaped around the centre with r > 0 everywhere, so the ring can never self-intersect.
    """
    rng = np.random.default_rng(OUTLINE_SEED)
    theta = np.linspace(0.0, 2 * math.pi, OUTLINE_VERTICES, endpoint=False)
    ellipse = 1.0 / np.sqrt((np.cos(theta) / 20_000.0) ** 2 + (np.sin(theta) / 15_000.0) ** 2)
    bend = np.zeros_like(theta)
    for k in range(2, 60):
        # Amplitude falls with frequency: big bays and peninsulas, then river-like wiggles.
        amplitude = 0.09 / k**1.1 if k < 9 else 0.012 / (k / 9) ** 1.3
        bend += amplitude * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    jitter = rng.normal(0.0, 0.0015, theta.size)
    radius = ellipse * (1.0 + bend + jitter)
    ring = to_lonlat(radius * np.cos(theta), radius * np.sin(theta))
    return np.vstack([ring, ring[:1]])


def rectangle(
    east_km: float, north_km: float, width_m: float, height_m: float, angle_deg: float
) -> np.ndarray:
    """A rotated rectangle (a campus or station block) as a closed [lon, lat] ring."""
    a = math.radians(angle_deg)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float) * [
        width_m / 2,
        height_m / 2,
    ]
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    xy = corners @ rot.T + [east_km * 1000, north_km * 1000]
    return to_lonlat(xy[:, 0], xy[:, 1])


def feature(zone_id: str, geometry: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """A zone Feature with exactly the properties the API accepts."""
    return {
        "type": "Feature",
        "id": zone_id,
        "geometry": geometry,
        "properties": {**properties, "schedule": None},
    }


def polygon(ring: np.ndarray) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring.tolist()]}


def zones() -> dict[str, Any]:
    county = {"jurisdiction_id": "demo-county"}
    features = [
        feature(
            "zone-demo-county",
            polygon(county_outline()),
            {"kind": "inclusion", "name": "Demo County 演示县 (执行地)", **county},
        ),
        feature(
            "zone-school-chengguan-no1",
            polygon(rectangle(0.9, 0.7, 260, 180, 12)),
            {"kind": "exclusion", "name": "Chengguan No.1 Middle School 城关第一中学", **county},
        ),
        feature(
            "zone-school-xishan-primary",
            polygon(rectangle(-10.4, 3.7, 150, 120, -8)),
            {"kind": "exclusion", "name": "Xishan Primary School 西山小学", **county},
        ),
        feature(
            "zone-school-dongqiao-middle",
            polygon(rectangle(10.6, -1.4, 220, 160, 30)),
            {"kind": "exclusion", "name": "Dongqiao Middle School 东桥中学", **county},
        ),
        feature(
            "zone-train-station",
            polygon(rectangle(2.6, -3.1, 420, 140, 65)),
            {"kind": "exclusion", "name": "Demo County Railway Station 演示县站", **county},
        ),
        feature(
            "zone-kindergarten-nanhu",
            {"type": "Point", "coordinates": to_lonlat(np.array([-800.0]), np.array([-8_500.0]))[0].tolist()},
            {"kind": "exclusion", "name": "Nanhu Kindergarten 南湖幼儿园", "radius_m": 150, **county},
        ),
        # A group zone: subjects convicted of drunk driving (醉驾) must keep out of the bar street.
        feature(
            "zone-bar-street-chengguan",
            polygon(rectangle(-1.3, 1.6, 380, 90, -20)),
            {"kind": "exclusion", "name": "Chengguan Bar Street 城关酒吧街", "group_id": "dui"},
        ),
    ]
    for f in features:
        geom = shapely.geometry.shape(f["geometry"])
        assert geom.is_valid, f["id"]
    return {"type": "FeatureCollection", "features": features}


def jurisdictions() -> dict[str, Any]:
    features = []
    for jid, name, kind, parent, east_km, north_km, settlement_m in JURISDICTIONS:
        lonlat = to_lonlat(np.array([east_km * 1000]), np.array([north_km * 1000]))[0].tolist()
        props: dict[str, Any] = {"name": name, "kind": kind, "parent_id": parent}
        if settlement_m is not None:
            props["settlement_radius_m"] = settlement_m
        features.append(
            {
                "type": "Feature",
                "id": jid,
                "geometry": {"type": "Point", "coordinates": lonlat},
                "properties": props,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def one_feature_per_line(collection: dict[str, Any]) -> bytes:
    """Compact JSON with one Feature per line: small files, readable diffs."""
    lines = b",\n".join(orjson.dumps(f) for f in collection["features"])
    return b'{"type": "FeatureCollection", "features": [\n' + lines + b"\n]}\n"


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "zones.geojson").write_bytes(one_feature_per_line(zones()))
    (OUT_DIR / "jurisdictions.json").write_bytes(one_feature_per_line(jurisdictions()))
    print(f"wrote {OUT_DIR / 'zones.geojson'} and {OUT_DIR / 'jurisdictions.json'}")


if __name__ == "__main__":
    main()
