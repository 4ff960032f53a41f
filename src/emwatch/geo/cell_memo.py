"""H3 cells of devices' fixes, remembered per device: a fix well inside its device's last cell takes that
cell without latLngToCell's trigonometry (nine libm calls, ~0.3 µs a point on the 2-core box).

Each device keeps an anchor: the last point whose cell was computed, that cell, and a reach such that
every point nearer the anchor than the reach lies in the same cell, with a margin far above rounding.
The reach is the least of
- the anchor's distance to the edge of its hex on its face's grid (the inscribed circle: half the grid's
  centre spacing), taken back to the sphere through the gnomonic projection's largest stretch, sec²θ;
- the angle the point may move before another icosahedron face becomes the nearest (H3 indexes a point
  on its nearest face's grid): a quarter of the gap between the squared chords to the nearest and the
  second-nearest face centre, since the gap moves by at most twice the chord moved;
- `_CAP` (1e-3 rad, ~6 km), so that the degrees distance the memo measures (equirectangular at the
  anchor's latitude) is within 1 % of the great-circle angle; anchors beyond 80° of latitude get none,
  nor those outside ±180° of longitude (there degrees-to-radians rounding moves the point indexed).
The same face and the same hex give the same index bit for bit (h3_kernel.cell_index), so the cells
are h3's (tests/geo/test_cell_memo.py checks it against h3-py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from emwatch.geo.h3_kernel import (
    INV_RES0_U_GNOMONIC,
    M_PI_180,
    M_SQRT7,
    MAX_RES,
    cell_index,
    face_hex2d,
    hex2d_to_ijk,
)
from emwatch.jit import cached_njit
from emwatch.kernel_threads import SERIAL, KernelThreads, part_bounds

# One 32-byte record per device: the anchor, cos of its latitude, the squared reach in degrees, its cell.
ANCHOR = np.dtype([("lat", "f8"), ("lon", "f8"), ("cos_lat", "f4"), ("reach2", "f4"), ("cell", "u8")])

_SQRT3_2 = math.sqrt(3.0) / 2
_CAP = 1e-3  # radians: the longest reach
_MAX_LAT = 80.0  # degrees: beyond it the degrees distance is too far from the angle
_SAFETY = 1.02  # the degrees distance's error (≤ 1 %) and float32 storage, with room to spare
_HEX_SLACK, _FACE_SLACK = 1e-9, 1e-12  # far above rounding: hex grid units, squared chord


def anchors(n_devices: int) -> NDArray[np.void]:
    """Empty anchors for n devices: no reach, so their first fixes are computed."""
    out = np.zeros(n_devices, ANCHOR)
    out["reach2"] = -1.0
    return out


@cached_njit(nogil=True)
def _memo_range(lat_deg: Any, lng_deg: Any, device: Any, res: int, anchor: Any, out: Any, lo: int,
                hi: int) -> int:
    """Cells of points lo..hi into `out`, each device's anchor read and moved; the number computed."""
    grid = INV_RES0_U_GNOMONIC
    for _ in range(res):
        grid *= M_SQRT7  # res-`res` grid units per unit of gnomonic distance
    computed = 0
    for n in range(lo, hi):
        lat, lng, d = lat_deg[n], lng_deg[n], device[n]
        if d >= 0:
            a = anchor[d]
            dy = lat - a.lat
            dx = (lng - a.lon) * a.cos_lat
            if dx * dx + dy * dy < a.reach2 and (a.cell >> np.uint64(52)) & np.uint64(15) == res:
                out[n] = a.cell
                continue
        face, x, y, sqd, sqd2, cos_lat = face_hex2d(lat * M_PI_180, lng * M_PI_180, res)
        i, j, k = hex2d_to_ijk(x, y)
        h = np.uint64(cell_index(face, i, j, k, res))
        out[n] = h
        computed += 1
        if d < 0:
            continue
        ii, jj = i - k, j - k  # the hex's centre on the grid: _ijkToHex2d
        hex_margin = 0.5 - math.hypot(x - (ii - 0.5 * jj), y - jj * _SQRT3_2) - _HEX_SLACK
        cos_far = 1.0 - 0.5 * sqd - _CAP  # cos of the angle to the face centre, after the longest reach
        reach2 = -1.0
        if h != 0 and hex_margin > 0.0 and cos_far > 0.0 and abs(lat) <= _MAX_LAT and abs(lng) <= 180.0:
            reach = min(hex_margin * cos_far * cos_far / grid, (sqd2 - sqd) / 4 - _FACE_SLACK, _CAP)
            if reach > 0.0:
                reach2 = (reach / M_PI_180 / _SAFETY) ** 2
        a = anchor[d]
        a.lat, a.lon, a.cos_lat, a.reach2, a.cell = lat, lng, cos_lat, reach2, h
    return computed


@cached_njit(parallel=True, nogil=True)
def _memo_cells(lat_deg: Any, lng_deg: Any, device: Any, res: int, anchor: Any, out: Any, parts: int) -> int:
    """_memo_range over `parts` ranges on numba's threads, each ending where a device's run of fixes does
    (the caller passes fixes grouped by device), so that one thread reads and moves a device's anchor."""
    n = len(out)
    if parts == 1:
        return _memo_range(lat_deg, lng_deg, device, res, anchor, out, 0, n)
    computed = 0
    for p in prange(parts):
        lo, hi = part_bounds(n, parts, p)
        while 0 < lo < n and device[lo] == device[lo - 1]:
            lo += 1
        while 0 < hi < n and device[hi] == device[hi - 1]:
            hi += 1
        computed += _memo_range(lat_deg, lng_deg, device, res, anchor, out, lo, hi)
    return computed


def memo_cells(
    lat: NDArray[np.float64], lon: NDArray[np.float64], device: NDArray[np.int32], anchor: NDArray[np.void],
    res: int, threads: KernelThreads = SERIAL,
) -> NDArray[np.uint64]:
    """H3 cell of every point at resolution `res`, equal to h3.latlng_to_cell; device[i] indexes
    `anchor` (-1: none), whose records are read and moved to the points computed.

    Raises ValueError, as h3 does, for a resolution outside 0..15 or a non-finite coordinate."""
    if not 0 <= res <= MAX_RES:
        raise ValueError(f"H3 resolution {res} is outside 0..{MAX_RES}")
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    device = np.ascontiguousarray(device, dtype=np.int32)
    if not lat.shape == lon.shape == device.shape or lat.ndim != 1:
        raise ValueError(f"lat, lon and device must be 1-D arrays of one length, got {lat.shape}, "
                         f"{lon.shape} and {device.shape}")
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise ValueError("H3 cells need finite latitudes and longitudes")
    if len(device) and int(device.max()) >= len(anchor):
        raise IndexError(f"device {int(device.max())} has no anchor ({len(anchor)} anchors)")
    out = np.empty(len(lat), dtype=np.uint64)
    # the split needs each device's fixes in one run: sorted devices have them (the engine's order)
    grouped = len(device) < 2 or bool((device[1:] >= device[:-1]).all())
    _memo_cells(lat, lon, device, int(res), anchor, out, threads.parts(len(out)) if grouped else 1)
    if not out.all():
        raise ValueError("H3 could not index a point (latLngToCell failed)")
    return out


# Compiled (or loaded from numba's cache) on import, as h3_kernel is, not on the first batch of fixes.
memo_cells(np.zeros(1), np.zeros(1), np.zeros(1, np.int32), anchors(1), 0)
