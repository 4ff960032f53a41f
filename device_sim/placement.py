"""Where people live and go: seeded point sampling under constraints, safe legs, names."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from device_sim.geo import FloatArray
from device_sim.geography import Geography
from device_sim.kinds import HOME_DRIFT_M

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红文斌"


def office_shares(count: int) -> FloatArray:
    """The county seat (first office) houses twice as many subjects as each other town."""
    shares = np.ones(count)
    shares[0] = 2.0
    return np.asarray(shares / shares.sum(), dtype=np.float64)


def sample_points(
    rng: np.random.Generator, ok: Any, cx: FloatArray, cy: FloatArray, sigma: FloatArray, ring: bool = False
) -> tuple[FloatArray, FloatArray]:
    """One point per row around (cx, cy); rows failing `ok(rows, x, y) -> bool array` are redrawn.

    Normal with s.d. `sigma`, or with `ring` uniform on an annulus sigma..2.7 sigma (a victim's home).
    """
    x, y = np.empty_like(cx), np.empty_like(cy)
    todo = np.arange(cx.size)
    for _ in range(500):
        if todo.size == 0:
            return x, y
        if ring:
            bearing, dist = (
                rng.uniform(0, 2 * np.pi, todo.size),
                rng.uniform(1.0, 2.7, todo.size) * sigma[todo],
            )
            x[todo], y[todo] = cx[todo] + dist * np.cos(bearing), cy[todo] + dist * np.sin(bearing)
        else:
            x[todo] = cx[todo] + rng.normal(0, sigma[todo])
            y[todo] = cy[todo] + rng.normal(0, sigma[todo])
        todo = todo[~np.asarray(ok(todo, x[todo], y[todo]), dtype=bool)]
    raise RuntimeError(f"could not place {todo.size} points inside the safe region")


def safe_leg(
    geo: Geography,
    x0: FloatArray,
    y0: FloatArray,
    x1: FloatArray,
    y1: FloatArray,
    vx: FloatArray,
    vy: FloatArray,
    victim_clearance_m: float,
) -> BoolArray:
    """A straight leg is safe if it lies in the safe region and keeps `victim_clearance_m` from the victim."""
    lines = shapely.linestrings(np.stack([np.column_stack([x0, y0]), np.column_stack([x1, y1])], axis=1))
    inside = shapely.within(lines, geo.safe_xy)
    clearance = segment_distance(x0, y0, x1, y1, vx, vy)
    far_from_victim = np.isnan(clearance) | (clearance > victim_clearance_m)
    long_enough = np.hypot(x1 - x0, y1 - y0) > 300.0
    return np.asarray(inside & far_from_victim & long_enough, dtype=bool)


def segment_distance(
    x0: FloatArray, y0: FloatArray, x1: FloatArray, y1: FloatArray, px: FloatArray, py: FloatArray
) -> FloatArray:
    """Distance from each point (px, py) to segment (x0, y0)-(x1, y1); NaN where the point is NaN."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    return np.asarray(np.hypot(x0 + t * dx - px, y0 + t * dy - py), dtype=np.float64)


def near_exclusion(
    geo: Geography, rng: np.random.Generator, x: FloatArray, y: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Homes moved to kinds.HOME_DRIFT_M from the edge of an exclusion zone everyone must avoid."""
    shared = [a for a, z in zip(geo.exclusions_xy, geo.exclusion_features, strict=True)
              if z["properties"].get("group_id") is None]  # fmt: skip
    zone = np.array(shared)[rng.integers(0, len(shared), x.size)]
    centre = shapely.get_coordinates(shapely.centroid(zone))
    bearing = rng.uniform(0, 2 * np.pi, x.size)
    unit = np.column_stack([np.cos(bearing), np.sin(bearing)])
    want = rng.uniform(*HOME_DRIFT_M, x.size)
    reach = want + 300.0
    for _ in range(8):  # Newton-like: move out or in by the distance error
        points = centre + unit * reach[:, None]
        reach += want - shapely.distance(zone, shapely.points(points))
    points = centre + unit * reach[:, None]
    return points[:, 0].copy(), points[:, 1].copy()


def name(rng: np.random.Generator) -> str:
    given = rng.choice(list(_GIVEN), size=int(rng.integers(1, 3)))
    return str(rng.choice(list(_SURNAMES))) + "".join(given)


