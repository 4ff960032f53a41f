"""H3 latLngToCell compiled for arrays: a numba port of uber/h3 4.5.0, bit-exact with h3-py."""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from emwatch.geo.h3_tables import (
    CW_OFFSET_FACES,
    FACE_AXIS_AZ_I,
    FACE_CENTER_POINT,
    FACE_EAST,
    FACE_IJK_BASE_CELL,
    FACE_IJK_CCW_ROT60,
    FACE_NORTH,
    IS_PENTAGON,
    ROTATE60_CCW,
    ROTATE60_CW,
)
from emwatch.jit import cached_njit
from emwatch.kernel_threads import SERIAL, KernelThreads, part_bounds

# Ported from the C sources h3-py 4.5.0 compiles (h3lib 4.5.0): latLngToCell and latLngToVec3 (h3Index.c,
# vec3d.h), _vec3ToHex2d/_vec3ToClosestFace/_vec3AzimuthRads (faceijk.c), _hex2dToCoordIJK, _upAp7(r),
# _downAp7(r), _ijkNormalize, _rotate60(c)cw (coordijk.h), _faceIjkToH3 and the digit rotations (h3Index.c),
# faceIjkBaseCells and baseCellData (baseCells.c). Exactness rests on doing the same IEEE double operations
# in the same order (no fastmath: LLVM then neither fuses multiply-adds nor reassociates) and on calling the
# same glibc sin/cos/tan/acos/atan2 the C library calls; tests/geo/test_h3_kernel.py checks it.

# Helpers are compiled into _cells_in_parts, whose machine code numba caches: they need no cache of their own.
_helper = numba.njit(nogil=True)

MAX_RES = 15
M_PI_180 = 0.0174532925199432957692369076848861271111  # degrees to radians, as the C code writes it
_M_2PI = 6.28318530717958647692528676655900576839433
_EPSILON = 0.0000000000000001
M_SQRT7 = 2.6457513110645905905016157536392604257102
_M_RSIN60 = 1.1547005383792515290182975610039149112953
_M_AP7_ROT_RADS = 0.333473172251832115336090755351601070065900389
INV_RES0_U_GNOMONIC = 2.61803398874989588842  # res-0 hex grid units per unit of gnomonic distance
_H3_INIT = 35184372088831  # mode 0, res 0, base cell 0, all 15 digits 7
_K_AXES_DIGIT = 1



@_helper
def _pos_angle(rads: float) -> float:
    tmp = rads + _M_2PI if rads < 0.0 else rads
    if rads >= _M_2PI:
        tmp -= _M_2PI
    return tmp


@_helper
def _round_seventh(n: int) -> int:
    """lround(n * M_ONESEVENTH) of the C code, in integers.

    n / 7 has fraction 0, 1/7, ..., 6/7 and never 1/2, and n * M_ONESEVENTH is within |n| * 2**-52 of it
    (|n| < 2**26 at res 15), so the nearest integer is the same: floor((n + 3) / 7).
    """
    return (n + 3) // 7


@_helper
def _normalize(i: int, j: int, k: int) -> tuple[int, int, int]:
    """_ijkNormalize: the same hex with no negative component and at least one zero.

    (i, j, k) and (i + c, j + c, k + c) are one hex, and exactly one of them has min 0: the C code's
    branches reach it by steps; subtracting the minimum reaches it at once, without branches.
    """
    m = min(i, j, k)
    return i - m, j - m, k - m


@_helper
def hex2d_to_ijk(x: float, y: float) -> tuple[int, int, int]:
    """_hex2dToCoordIJK: the hex containing the 2D point (x, y) of the face's hex grid."""
    a1 = abs(x)
    a2 = abs(y)
    x2 = a2 * _M_RSIN60
    x1 = a1 + x2 / 2.0
    m1 = int(x1)
    m2 = int(x2)
    r1 = x1 - m1
    r2 = x2 - m2
    if r1 < 0.5:
        if r1 < 1.0 / 3.0:
            i = m1
            j = m2 if r2 < (1.0 + r1) / 2.0 else m2 + 1
        else:
            j = m2 if r2 < (1.0 - r1) else m2 + 1
            i = m1 + 1 if (1.0 - r1) <= r2 and r2 < (2.0 * r1) else m1
    elif r1 < 2.0 / 3.0:
        j = m2 if r2 < (1.0 - r1) else m2 + 1
        i = m1 if (2.0 * r1 - 1.0) < r2 and r2 < (1.0 - r1) else m1 + 1
    else:
        i = m1 + 1
        j = m2 if r2 < (r1 / 2.0) else m2 + 1
    # fold across the axes; i and j are non-negative here, so // and % agree with C's / and %
    if x < 0.0:
        if j % 2 == 0:
            i = int(i - 2.0 * (i - j // 2))
        else:
            i = int(i - (2.0 * (i - (j + 1) // 2) + 1))
    if y < 0.0:
        i = i - (2 * j + 1) // 2
        j = -j
    return _normalize(i, j, 0)


@_helper
def face_hex2d(lat: float, lng: float, res: int) -> tuple[int, float, float, float, float, float]:
    """latLngToVec3 + _vec3ToHex2d: the icosahedron face nearest the point and the point on that face's
    res-`res` hex grid (x, y); also the squared chord to the nearest and second-nearest face centres and
    cos(lat), for geo/cell_memo.py."""
    cr = math.cos(lat)
    px = math.cos(lng) * cr
    py = math.sin(lng) * cr
    pz = math.sin(lat)
    face = 0
    sqd = 5.0
    sqd2 = 5.0
    for f in range(20):
        dx = FACE_CENTER_POINT[f, 0] - px
        dy = FACE_CENTER_POINT[f, 1] - py
        dz = FACE_CENTER_POINT[f, 2] - pz
        d = dx * dx + dy * dy + dz * dz
        if d < sqd:
            face = f
            sqd2 = sqd
            sqd = d
        elif d < sqd2:
            sqd2 = d
    r = math.acos(1 - sqd * 0.5)
    if r < _EPSILON:
        return face, 0.0, 0.0, sqd, sqd2, cr
    # _vec3AzimuthRads(face centre, p): p projected on the face centre's tangent plane
    cx = FACE_CENTER_POINT[face, 0]
    cy = FACE_CENTER_POINT[face, 1]
    cz = FACE_CENTER_POINT[face, 2]
    dot = px * cx + py * cy + pz * cz
    qx = px + -dot * cx
    qy = py + -dot * cy
    qz = pz + -dot * cz
    norm = math.sqrt(qx * qx + qy * qy + qz * qz)
    s = 1.0 / norm if norm > 0.0 else 0.0
    qx *= s
    qy *= s
    qz *= s
    az = math.atan2(
        qx * FACE_EAST[face, 0] + qy * FACE_EAST[face, 1] + qz * FACE_EAST[face, 2],
        qx * FACE_NORTH[face, 0] + qy * FACE_NORTH[face, 1] + qz * FACE_NORTH[face, 2],
    )
    theta = _pos_angle(FACE_AXIS_AZ_I[face] - _pos_angle(az))
    if res % 2 == 1:  # Class III grids are rotated against Class II
        theta = _pos_angle(theta - _M_AP7_ROT_RADS)
    r = math.tan(r) * INV_RES0_U_GNOMONIC
    for _ in range(res):
        r *= M_SQRT7
    return face, r * math.cos(theta), r * math.sin(theta), sqd, sqd2, cr


@_helper
def _digit(h: int, r: int) -> int:
    return (h >> ((MAX_RES - r) * 3)) & 7


@_helper
def _set_digit(h: int, r: int, d: int) -> int:
    shift = (MAX_RES - r) * 3
    return (h & ~(7 << shift)) | (d << shift)


@_helper
def _leading_digit(h: int, res: int) -> int:
    for r in range(1, res + 1):
        d = _digit(h, r)
        if d:
            return d
    return 0


@_helper
def _rotate(h: int, res: int, table: int) -> int:
    """_h3Rotate60ccw / _h3Rotate60cw: every digit through the packed digit table given."""
    for r in range(1, res + 1):
        h = _set_digit(h, r, (table >> (3 * _digit(h, r))) & 7)
    return h


@_helper
def _rotate_pent_ccw(h: int, res: int) -> int:
    """_h3RotatePent60ccw: rotate, then rotate once more out of a leading (deleted) k-axes digit."""
    found_first_nonzero = False
    for r in range(1, res + 1):
        h = _set_digit(h, r, (ROTATE60_CCW >> (3 * _digit(h, r))) & 7)
        if not found_first_nonzero and _digit(h, r) != 0:
            found_first_nonzero = True
            if _leading_digit(h, res) == _K_AXES_DIGIT:
                h = _rotate(h, res, ROTATE60_CCW)
    return h


@_helper
def _up_one_level(i: int, j: int, r: int) -> tuple[int, int, int]:
    """One step of _faceIjkToH3's digit loop: the res-r parent of a res-(r+1) hex and the digit between.

    Hexes are carried as ij (= ijk with k = 0, unnormalized): _upAp7(r) and _downAp7(r) are linear, and
    normalizing never changes i - k and j - k, so this equals the C code's normalize-every-step ijk.
    """
    if r % 2 == 0:  # r + 1 is Class III: _upAp7; _downAp7 of (a, b, 0) is ij (2a + b, 3b - a)
        a = _round_seventh(3 * i - j)
        b = _round_seventh(i + 2 * j)
        di = i - (2 * a + b)
        dj = j - (3 * b - a)
    else:  # Class II: _upAp7r; _downAp7r of (a, b, 0) is ij (3a - b, a + 2b)
        a = _round_seventh(2 * i + j)
        b = _round_seventh(3 * j - i)
        di = i - (3 * a - b)
        dj = j - (a + 2 * b)
    di, dj, dk = _normalize(di, dj, 0)
    digit = 7 if di > 1 or dj > 1 or dk > 1 else 4 * di + 2 * dj + dk  # _unitIjkToDigit
    return a, b, digit


@_helper
def _with_base_cell(h: int, face: int, i: int, j: int, k: int, res: int) -> int:
    """The end of _faceIjkToH3: base cell of the res-0 face ijk, rotated into its orientation (0: H3_NULL)."""
    if i > 2 or j > 2 or k > 2:
        return 0
    base_cell = FACE_IJK_BASE_CELL[face, i, j, k]
    h |= base_cell << 45
    if res == 0:
        return h
    num_rots = FACE_IJK_CCW_ROT60[face, i, j, k]
    if IS_PENTAGON[base_cell]:
        # force rotation out of the missing k-axes sub-sequence (cw on a cw-offset face, else ccw)
        if _leading_digit(h, res) == _K_AXES_DIGIT:
            if CW_OFFSET_FACES[base_cell, 0] == face or CW_OFFSET_FACES[base_cell, 1] == face:
                h = _rotate(h, res, ROTATE60_CW)
            else:
                h = _rotate(h, res, ROTATE60_CCW)
        for _ in range(num_rots):
            h = _rotate_pent_ccw(h, res)
    else:
        for _ in range(num_rots):
            h = _rotate(h, res, ROTATE60_CCW)
    return h


@_helper
def cell_index(face: int, i: int, j: int, k: int, res: int) -> int:
    """_faceIjkToH3: the H3 index of hex ijk of the res-`res` grid of `face` (0: H3_NULL)."""
    i -= k
    j -= k
    h = (_H3_INIT & ~(15 << 59)) | (1 << 59) | (res << 52)
    for r in range(res - 1, -1, -1):
        i, j, digit = _up_one_level(i, j, r)
        shift = (MAX_RES - r - 1) * 3
        h = (h & ~(7 << shift)) | (digit << shift)
    i, j, k = _normalize(i, j, 0)
    return _with_base_cell(h, face, i, j, k, res)


@_helper
def _cells_into(lat_deg: Any, lng_deg: Any, res: int, out: Any, lo: int, hi: int) -> None:
    """latLngToCell of points lo..hi into `out` (0 where the C code would fail: never for finite input)."""
    for n in range(lo, hi):
        face, x, y, _, _, _ = face_hex2d(lat_deg[n] * M_PI_180, lng_deg[n] * M_PI_180, res)
        i, j, k = hex2d_to_ijk(x, y)
        out[n] = np.uint64(cell_index(face, i, j, k, res))


def _cells_in_parts(lat_deg: Any, lng_deg: Any, res: int, out: Any, parts: int) -> None:
    """_cells_into over `parts` contiguous ranges, run on numba's threads (kernel_threads.py)."""
    if parts == 1:  # in this thread: waking numba's pool for one part costs ~10-20 % of it
        _cells_into(lat_deg, lng_deg, res, out, 0, out.shape[0])
        return
    for p in numba.prange(parts):
        lo, hi = part_bounds(out.shape[0], parts, p)
        _cells_into(lat_deg, lng_deg, res, out, lo, hi)


# Compiled when this module is imported, not on the first batch of fixes: a cold compile takes ~10 s on the
# 2-core box, a load from numba's cache ~0.5 s (emwatch/jit.py: the cache, or none where none is writable).
_cells_compiled = cached_njit(
    "void(float64[::1], float64[::1], int64, uint64[::1], int64)", parallel=True, nogil=True
)(_cells_in_parts)


def latlng_to_cells(
    lat: NDArray[np.float64], lng: NDArray[np.float64], res: int, threads: KernelThreads = SERIAL
) -> NDArray[np.uint64]:
    """H3 cell of every (lat, lng) point in degrees at resolution `res`; h3.latlng_to_cell, bit for bit.
    `threads` share the points (the kernel holds no GIL).

    Raises ValueError, as h3 does, for a resolution outside 0..15 or a non-finite coordinate.
    """
    if not 0 <= res <= MAX_RES:
        raise ValueError(f"H3 resolution {res} is outside 0..{MAX_RES}")
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    lng = np.ascontiguousarray(lng, dtype=np.float64)
    if lat.shape != lng.shape or lat.ndim != 1:
        raise ValueError(f"lat and lng must be 1-D arrays of one length, got {lat.shape} and {lng.shape}")
    if not (np.isfinite(lat).all() and np.isfinite(lng).all()):
        raise ValueError("H3 cells need finite latitudes and longitudes")
    out = np.empty(lat.shape[0], dtype=np.uint64)
    _cells_compiled(lat, lng, int(res), out, threads.parts(len(out)))
    if not out.all():
        raise ValueError("H3 could not index a point (latLngToCell failed)")
    return out
