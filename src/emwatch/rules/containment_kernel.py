"""The second half of the compiled containment walk: every (fix, zone) pair answered, and the helpers
both halves share.

`containment_listing` gathers the pairs (own/inclusion zones, shared zones met in the batch, open
episodes, permit destinations); here each pair gets point-in-zone and the accuracy classification
(rules/accuracy.py). A pair it cannot settle exactly as the numpy path would is flagged for that path
(`NEEDS_CONTAINS`: a large polygon with holes or parts, left to GEOS; `NEEDS_REFERENCE`: its distance,
or a libm-vs-numpy rounding difference that could matter, within ~1e-9 of a limit). Large simple
polygons (a county) are answered here from their bands (containment_geometry).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from emwatch.jit import cached_njit
from emwatch.kernel_threads import part_bounds
from emwatch.rules.containment_geometry import (
    NEEDS_DISTANCE,
    distance_answer,
    pair_answer,
    polygon_distance,
    polygon_location,
)

BAD_CELL = -1  # a cell not at the index resolution
BAD_SOURCE = -2  # a fix source with no default accuracy
_SRC_LBS = 2
NO_KEY = np.uint64(0xFFFFFFFFFFFFFFFF)  # an empty slot of a key_set: no (zone, cell) key is all ones
# A zone record (zone_records): the four numbers pair_answer takes, then _CIRCLE | _INCLUSION | (ring + 1)
# << _RING_SHIFT as a float64 (exact: ring < 2**50).
_META, _CIRCLE, _INCLUSION, _RING_SHIFT = 4, 1, 2, 2

# Helpers taking arrays are compiled without reference counting (numba's NRT): per call it would
# increment and decrement every array argument atomically, which cost a third of the walk's time.
@cached_njit(_nrt=False)
def lower_bound(a: Any, v: Any, lo: int, hi: int) -> int:
    """First index in a[lo:hi] (sorted) whose value is not below v. Branch-free halving: the comparisons
    of a binary search are coin flips to the branch predictor, a conditional add is not."""
    n = hi - lo
    if n <= 0:
        return lo
    base = lo
    while n > 1:
        half = n >> 1
        base += half * (a[base + half - 1] < v)
        n -= half
    return int(base + (a[base] < v))


@cached_njit()
def grown(buf: Any, need: int) -> Any:
    """A copy of buf with room for at least `need` items."""
    out = np.empty(max(2 * len(buf), need), buf.dtype)
    out[:len(buf)] = buf
    return out


@cached_njit(inline="always")
def _slot(key: np.uint64, mask: np.uint64) -> np.uint64:
    return ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)) & mask  # Fibonacci hashing


@cached_njit()
def key_set(keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """An open-addressing set of `keys` (none may be NO_KEY), at most half full, for `in_key_set`:
    one or two probes where a binary search over the sorted keys took ~17 dependent steps."""
    size = 16
    while size < 2 * len(keys):
        size *= 2
    table = np.full(size, NO_KEY, np.uint64)
    mask = np.uint64(size - 1)
    for key in keys:
        s = _slot(key, mask)
        while table[s] != NO_KEY and table[s] != key:
            s = (s + np.uint64(1)) & mask
        table[s] = key
    return table


@cached_njit(_nrt=False)
def in_key_set(table: Any, key: np.uint64) -> bool:
    """Whether `key` is in the key_set `table`."""
    mask = np.uint64(len(table) - 1)
    s = _slot(key, mask)
    while table[s] != NO_KEY:
        if table[s] == key:
            return True
        s = (s + np.uint64(1)) & mask
    return False

@cached_njit()
def key_map(keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """An open-addressing map, at most half full, from each distinct key of the sorted `keys` (none
    NO_KEY) to the index of its first occurrence, for `key_index`: rows of (key, index), so that a probe
    reads one cache line."""
    size = 16
    while size < 2 * len(keys):
        size *= 2
    table = np.full((size, 2), NO_KEY, np.uint64)
    mask = np.uint64(size - 1)
    for k in range(len(keys)):
        if k and keys[k] == keys[k - 1]:
            continue
        s = _slot(keys[k], mask)
        while table[s, 0] != NO_KEY:
            s = (s + np.uint64(1)) & mask
        table[s, 0], table[s, 1] = keys[k], np.uint64(k)
    return table


@cached_njit(_nrt=False)
def key_index(table: Any, key: np.uint64) -> int:
    """The index `key_map` holds for `key`, or -1."""
    mask = np.uint64(len(table) - 1)
    s = _slot(key, mask)
    while table[s, 0] != NO_KEY:
        if table[s, 0] == key:
            return int(table[s, 1])
        s = (s + np.uint64(1)) & mask
    return -1


def zone_records(
    inclusion: NDArray[np.bool_], circle: NDArray[np.bool_], bbox: tuple[NDArray[np.float64], ...],
    centre_lat: NDArray[np.float64], centre_lon: NDArray[np.float64], radius_m: NDArray[np.float64],
    ring_of: NDArray[np.int32],
) -> NDArray[np.float64]:
    """One 40-byte record per zone, what the walk reads of it for every pair: a circle's (centre lat,
    centre lon, radius, 0) or a polygon's bbox (min lon, min lat, max lon, max lat), then its kind and
    ring row. A pair's facts in one or two cache lines, where a column per fact cost a miss each."""
    min_lon, min_lat, max_lon, max_lat = bbox
    out = np.empty((len(inclusion), 5))
    out[:, 0] = np.where(circle, centre_lat, min_lon)
    out[:, 1] = np.where(circle, centre_lon, min_lat)
    out[:, 2] = np.where(circle, radius_m, max_lon)
    out[:, 3] = np.where(circle, 0.0, max_lat)
    meta = (ring_of.astype(np.int64) + 1) << _RING_SHIFT
    out[:, _META] = meta | np.where(circle, _CIRCLE, 0) | np.where(inclusion, _INCLUSION, 0)
    return out


@cached_njit(parallel=True, nogil=True)
def answer_pairs(
    out_fix: Any, out_zone: Any, fix_cols: Any, default_acc: Any, zt: Any, rt: Any, key_cols: Any,
    parts: int,
) -> tuple[Any, Any, Any, Any]:
    """(status, inside, breach, confirmed) of the pairs of `containment_pairs`, answered in `parts`
    contiguous ranges on numba's threads (each pair's answer is its own: kernel_threads.py)."""
    n = len(out_fix)
    status = np.empty(n, np.int8)
    inside = np.empty(n, np.bool_)
    breach = np.empty(n, np.bool_)
    confirmed = np.empty(n, np.bool_)
    # numba hands a parallel loop its free variables one by one and takes no tuples among them: the
    # columns are unpacked here and the ring tuple rebuilt inside the loop.
    cell, lon, lat, acc, src = fix_cols[4], fix_cols[5], fix_cols[6], fix_cols[8], fix_cols[9]
    key_bits, key_shift, key_mask = key_cols[1], key_cols[2], key_cols[3]
    zone, interior = zt
    ring_start, coord_start, ring_x, ring_y, banded = rt
    b0, b1, b2, b3, b4, b5, b6, b7 = banded
    if parts == 1:  # in this thread: waking numba's pool for one part costs more than it saves
        _answer_range(0, n, out_fix, out_zone, cell, lon, lat, acc, src, default_acc, zone, interior, rt,
                      key_bits, key_shift, key_mask, status, inside, breach, confirmed)
        return status, inside, breach, confirmed
    for p in prange(parts):
        lo, hi = part_bounds(n, parts, p)
        _answer_range(
            lo, hi, out_fix, out_zone, cell, lon, lat, acc, src, default_acc, zone, interior,
            (ring_start, coord_start, ring_x, ring_y, (b0, b1, b2, b3, b4, b5, b6, b7)),
            key_bits, key_shift, key_mask, status, inside, breach, confirmed,
        )
    return status, inside, breach, confirmed


@cached_njit(nogil=True)
def _answer_range(
    lo: int, hi: int, out_fix: Any, out_zone: Any, cell: Any, lon: Any, lat: Any, acc: Any, src: Any,
    default_acc: Any, zone: Any, interior: Any, rt: Any, key_bits: Any, key_shift: Any, key_mask: Any,
    status: Any, inside: Any, breach: Any, confirmed: Any,
) -> None:
    """status, inside, breach, confirmed of the pairs lo..hi, written in place."""
    m = hi - lo
    # The zones' records, gathered for all pairs first: independent loads the CPU overlaps, where the
    # branchy per-pair code would wait on each cache miss in turn (the zone records are ~70 MB).
    g_circle = np.empty(m, np.bool_)
    g_inclusion = np.empty(m, np.bool_)
    g_ring = np.empty(m, np.int32)
    g = np.empty((m, 4))
    for j in range(m):
        z = out_zone[lo + j]
        g[j, 0], g[j, 1], g[j, 2], g[j, 3] = zone[z, 0], zone[z, 1], zone[z, 2], zone[z, 3]
        meta = np.int64(zone[z, _META])
        g_circle[j], g_inclusion[j] = (meta & _CIRCLE) != 0, (meta & _INCLUSION) != 0
        g_ring[j] = (meta >> _RING_SHIFT) - 1
    probe = np.full(m, NO_KEY, np.uint64)
    key = np.zeros(m, np.uint64)
    mask = np.uint64(len(interior) - 1)
    for j in range(m):
        i = out_fix[lo + j]
        if not g_circle[j] and g[j, 0] <= lon[i] <= g[j, 2] and g[j, 1] <= lat[i] <= g[j, 3]:
            key[j] = (np.uint64(out_zone[lo + j]) << key_bits) | ((cell[i] >> key_shift) & key_mask)
            probe[j] = interior[_slot(key[j], mask)]
    for j in range(m):
        i = out_fix[lo + j]
        x, y, ring = lon[i], lat[i], g_ring[j]
        r = default_acc[src[i]] if np.isnan(acc[i]) else np.float64(acc[i])
        hit = probe[j] == key[j] or (probe[j] != NO_KEY and in_key_set(interior, key[j]))
        location = -1
        if (not g_circle[j] and not hit and ring != -1 and g[j, 0] <= x <= g[j, 2]
                and g[j, 1] <= y <= g[j, 3]):
            location = polygon_location(rt, ring, x, y)
        answer = pair_answer(
            x, y, r, src[i] != _SRC_LBS, g_circle[j], g_inclusion[j], ring, g[j, 0], g[j, 1], g[j, 2],
            g[j, 3], hit, location,
        )
        if answer[0] == NEEDS_DISTANCE:
            answer = distance_answer(
                polygon_distance(rt, ring, x, y, answer[4]), answer[4], g_inclusion[j], answer[1], answer[2],
                answer[3],
            )
        o = lo + j
        status[o], inside[o], breach[o], confirmed[o] = answer[0], answer[1], answer[2], answer[3]
