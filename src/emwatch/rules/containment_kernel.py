"""The containment hot path compiled: one walk over a batch's fixes yields every (fix, zone) check.

Per fix it gathers the zones `evaluate_containment` checks (own/inclusion zones from the registry's CSR,
applicable shared zones from the H3 cover, open episodes, zones met earlier in the batch, permit
destinations), dedupes them in (fix, zone) order, and answers point-in-zone and the accuracy
classification (rules/accuracy.py) for each pair. A pair it cannot settle exactly as the numpy path
would is flagged for that path (`NEEDS_CONTAINS`: a large polygon with holes or parts, left to GEOS;
`NEEDS_REFERENCE`: its distance, or a libm-vs-numpy rounding difference that could matter, within ~1e-9
of a limit). Large simple polygons (a county) are answered here from their bands (containment_geometry).
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
def _lower(a: Any, v: Any, lo: int, hi: int) -> int:
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
def _grown(buf: Any, need: int) -> Any:
    """A copy of buf with room for at least `need` items."""
    out = np.empty(max(2 * len(buf), need), buf.dtype)
    out[:len(buf)] = buf
    return out


@cached_njit(inline="always")
def _slot(key: np.uint64, mask: np.uint64) -> np.uint64:
    return ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)) & mask  # Fibonacci hashing


@cached_njit()
def key_set(keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """An open-addressing set of `keys` (none may be NO_KEY), at most half full, for `_in_key_set`:
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
def _in_key_set(table: Any, key: np.uint64) -> bool:
    """Whether `key` is in the key_set `table`."""
    mask = np.uint64(len(table) - 1)
    s = _slot(key, mask)
    while table[s] != NO_KEY:
        if table[s] == key:
            return True
        s = (s + np.uint64(1)) & mask
    return False

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


@cached_njit(inline="always")
def _failed(code: int) -> tuple[Any, ...]:
    return code, np.empty(0, np.int64), np.empty(0, np.int64)


@cached_njit(parallel=True, nogil=True)
def containment_pairs(
    fix_cols: Any, registry_cols: Any, open_subject: NDArray[np.int32], open_zone: NDArray[np.int32],
    permit_cols: Any, key_cols: Any, parts: int,
) -> tuple[Any, ...]:
    """(0, fix, zone) of every check of the eligible fixes, in (fix, zone) order, for `answer_pairs`;
    (BAD_*, empty arrays) when the input is bad. Each fix's zones are gathered in `parts` contiguous
    ranges on numba's threads (kernel_threads.py), then packed in fix order."""
    device, subject, fresh, suspect, cell, _, _, ts, _, src = fix_cols
    (wearable, pair_start, pair_zone, cover_cells, cover_set, cover_zone, shared, zone_jur, ancestors,
     default_acc) = registry_cols
    p_subject, p_key, p_ends, p_zone_start, p_zone = permit_cols
    n = len(device)
    # numba turns array expressions of a parallel function into parallel loops of their own: everything
    # but the two prange loops runs in the serial helpers.
    code, eligible, near_subject, near_zone = _eligible_and_near(
        device, subject, fresh, suspect, cell, src, wearable, cover_cells, cover_set, cover_zone, shared,
        zone_jur, ancestors, len(default_acc), key_cols[0],
    )
    if code:
        return _failed(code)
    runs = np.empty((n, _RUNS), np.int64)
    cap = np.empty(n, np.int64)
    touched = 0
    if parts == 1:  # in this thread: waking numba's pool for one part costs more than it saves
        touched = _pair_runs(0, n, eligible, subject, ts, pair_start, pair_zone, open_subject, open_zone,
                             near_subject, p_subject, p_key, p_ends, p_zone_start, runs, cap)
    else:
        for p in prange(parts):
            lo, hi = part_bounds(n, parts, p)
            touched += _pair_runs(lo, hi, eligible, subject, ts, pair_start, pair_zone, open_subject,
                                  open_zone, near_subject, p_subject, p_key, p_ends, p_zone_start, runs, cap)
    start = _offsets(cap)
    out_zone = np.empty(start[n], np.int64)
    count = np.empty(n, np.int64)
    if parts == 1:
        _fill_pairs(0, n, runs, start, pair_zone, near_zone, open_zone, p_zone_start, p_zone, out_zone, count)
    else:
        for p in prange(parts):
            lo, hi = part_bounds(n, parts, p)
            _fill_pairs(lo, hi, runs, start, pair_zone, near_zone, open_zone, p_zone_start, p_zone, out_zone,
                        count)
    out_fix, n_out = _packed(start, count, out_zone)
    if touched < 0:  # never (a sum of zone numbers): it keeps the touching loop
        return _failed(BAD_CELL)
    return 0, out_fix, out_zone[:n_out]


_RUNS = 7  # per fix: own zones lo, hi; shared zones met lo, hi; open episodes lo, hi; permit (-1: none)


@cached_njit(nogil=True)
def _eligible_and_near(
    device: Any, subject: Any, fresh: Any, suspect: Any, cell: Any, src: Any, wearable: Any, cover_cells: Any,
    cover_set: Any, cover_zone: Any, shared: Any, zone_jur: Any, ancestors: Any, n_sources: int,
    resolution: Any,
) -> tuple[int, Any, Any, Any]:
    """(0 or BAD_*, eligible fixes, (subject, shared zone) pairs met by the batch, sorted by subject)."""
    n = len(device)
    eligible = np.zeros(n, np.bool_)
    for i in range(n):
        eligible[i] = fresh[i] and not suspect[i] and subject[i] >= 0 and wearable[device[i]]
        if eligible[i]:
            if (cell[i] >> np.uint64(52)) & np.uint64(15) != resolution:
                return BAD_CELL, eligible, np.empty(0, np.int64), np.empty(0, np.int64)
            if src[i] < -n_sources or src[i] >= n_sources:
                return BAD_SOURCE, eligible, np.empty(0, np.int64), np.empty(0, np.int64)
    # Shared zones met by any fix of a subject are re-checked on all its fixes (leaving is seen).
    near_subject = np.empty(64, np.int64)
    near_zone = np.empty(64, np.int64)
    n_near = 0
    for i in range(n):
        # most fixes are in no shared zone's cover: one probe of a hash set says so
        if not eligible[i] or not _in_key_set(cover_set, cell[i]):
            continue
        s = subject[i]
        k = _lower(cover_cells, cell[i], 0, len(cover_cells))
        while k < len(cover_cells) and cover_cells[k] == cell[i]:
            z = cover_zone[k]
            k += 1
            jur = zone_jur[z]
            if not shared[z] or jur < 0:
                continue
            for level in range(ancestors.shape[1]):
                if ancestors[s, level] == jur:
                    if n_near == len(near_subject):
                        near_subject, near_zone = _grown(near_subject, 0), _grown(near_zone, 0)
                    near_subject[n_near] = s
                    near_zone[n_near] = z
                    n_near += 1
                    break
    order = np.argsort(near_subject[:n_near])
    return 0, eligible, near_subject[:n_near][order], near_zone[:n_near][order]


@cached_njit(nogil=True)
def _pair_runs(
    lo: int, hi: int, eligible: Any, subject: Any, ts: Any, pair_start: Any, pair_zone: Any,
    open_subject: Any, open_zone: Any, near_subject: Any, p_subject: Any, p_key: Any, p_ends: Any,
    p_zone_start: Any, runs: Any, cap: Any,
) -> int:
    """runs[i] and cap[i] (how many zones before repeats are dropped) of the fixes lo..hi; the int is of
    no use: it keeps the touching loop."""
    for i in range(lo, hi):
        cap[i] = 0
        if not eligible[i]:
            continue
        s, t = subject[i], ts[i]
        runs[i, 0], runs[i, 1] = pair_start[s], pair_start[s + 1]
        runs[i, 2] = _lower(near_subject, s, 0, len(near_subject))
        runs[i, 3] = _lower(near_subject, s + 1, runs[i, 2], len(near_subject))
        runs[i, 4] = _lower(open_subject, s, 0, len(open_subject))
        runs[i, 5] = _lower(open_subject, s + 1, runs[i, 4], len(open_subject))
        p = -1
        if len(p_key):
            # PermitTable.destinations: the subject's permit started last at or before ts, if not ended
            p = _lower(p_key, s * (np.int64(1) << 42) + t + 1, 0, len(p_key)) - 1
            if p >= 0 and not (p_subject[p] == s and t < p_ends[p]):
                p = -1
        runs[i, 6] = p
        cap[i] = runs[i, 1] - runs[i, 0] + runs[i, 3] - runs[i, 2] + runs[i, 5] - runs[i, 4]
        if p >= 0:
            cap[i] += p_zone_start[p + 1] - p_zone_start[p]
    touched = 0  # the first zone of each row's runs, read in one loop so that the misses overlap
    for i in range(lo, hi):
        if cap[i]:
            if runs[i, 1] > runs[i, 0]:
                touched += pair_zone[runs[i, 0]]
            if runs[i, 5] > runs[i, 4]:
                touched += open_zone[runs[i, 4]]
    return touched


@cached_njit(nogil=True)
def _offsets(cap: Any) -> Any:
    """start[i] = sum of cap[:i], for i in 0..len(cap)."""
    start = np.empty(len(cap) + 1, np.int64)
    start[0] = 0
    for i in range(len(cap)):
        start[i + 1] = start[i] + cap[i]
    return start


@cached_njit(nogil=True)
def _fill_pairs(
    lo: int, hi: int, runs: Any, start: Any, pair_zone: Any, near_zone: Any, open_zone: Any,
    p_zone_start: Any, p_zone: Any, out_zone: Any, count: Any,
) -> None:
    """Each fix's zones (lo..hi) into out_zone from start[i], sorted, repeats dropped; count[i] kept."""
    for i in range(lo, hi):
        o, c = start[i], 0
        if start[i + 1] == o:
            count[i] = 0
            continue
        for k in range(runs[i, 0], runs[i, 1]):
            out_zone[o + c] = pair_zone[k]
            c += 1
        for k in range(runs[i, 2], runs[i, 3]):
            out_zone[o + c] = near_zone[k]
            c += 1
        for k in range(runs[i, 4], runs[i, 5]):
            out_zone[o + c] = open_zone[k]
            c += 1
        p = runs[i, 6]
        if p >= 0:
            for k in range(p_zone_start[p], p_zone_start[p + 1]):
                out_zone[o + c] = p_zone[k]
                c += 1
        for a in range(1, c):  # a handful of zones: insertion sort, then skip repeats
            v, b = out_zone[o + a], a - 1
            while b >= 0 and out_zone[o + b] > v:
                out_zone[o + b + 1] = out_zone[o + b]
                b -= 1
            out_zone[o + b + 1] = v
        w = 1
        for a in range(1, c):
            if out_zone[o + a] != out_zone[o + w - 1]:
                out_zone[o + w] = out_zone[o + a]
                w += 1
        count[i] = w


@cached_njit(nogil=True)
def _packed(start: Any, count: Any, out_zone: Any) -> tuple[Any, int]:
    """Each fix's count[i] zones moved down to follow the previous fix's (in place: never forward), and
    the fix of each; (fix, number of pairs)."""
    out_fix = np.empty(len(out_zone), np.int64)
    n_out = 0
    for i in range(len(count)):
        o = start[i]
        for a in range(count[i]):
            out_zone[n_out] = out_zone[o + a]
            out_fix[n_out] = i
            n_out += 1
    return out_fix[:n_out], n_out


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
        hit = probe[j] == key[j] or (probe[j] != NO_KEY and _in_key_set(interior, key[j]))
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
