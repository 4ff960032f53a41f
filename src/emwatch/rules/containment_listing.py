"""The first half of the compiled containment walk: which zones each fix of a batch is checked against.

Per fix: its subject's own and inclusion zones (the registry's CSR), the shared zones whose H3 cover
holds any fix of the subject in the batch (so leaving one is seen), zones with an open episode, and a
running permit's destinations; sorted, repeats dropped, in (fix, zone) order. `containment_kernel`
answers the pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from emwatch.jit import cached_njit
from emwatch.kernel_threads import part_bounds
from emwatch.rules.containment_kernel import BAD_CELL, BAD_SOURCE, grown, key_index, lower_bound


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
    (wearable, pair_start, pair_zone, cover_cells, cover_map, cover_zone, shared, zone_jur, ancestors,
     default_acc) = registry_cols
    p_subject, p_key, p_ends, p_zone_start, p_zone = permit_cols
    n = len(device)
    # numba turns array expressions of a parallel function into parallel loops of their own: everything
    # but the prange loops runs in the serial helpers.
    eligible = np.empty(n, np.bool_)
    first_cover = np.empty(n, np.int64)
    bad = np.zeros(parts, np.int64)
    if parts == 1:  # in this thread: waking numba's pool for one part costs more than it saves
        bad[0] = _eligible_range(0, n, device, subject, fresh, suspect, cell, src, wearable, cover_map,
                                 len(default_acc), key_cols[0], eligible, first_cover)
    else:
        for p in prange(parts):
            lo, hi = part_bounds(n, parts, p)
            bad[p] = _eligible_range(lo, hi, device, subject, fresh, suspect, cell, src, wearable, cover_map,
                                     len(default_acc), key_cols[0], eligible, first_cover)
    code = _first_code(bad)  # the first bad fix's, as one pass over all fixes would find it
    if code:
        return _failed(code)
    near_subject, near_zone, near_touched = _near_pairs(
        eligible, first_cover, subject, cell, cover_cells, cover_zone, shared, zone_jur, ancestors
    )
    runs = np.empty((n, _RUNS), np.int64)
    cap = np.empty(n, np.int64)
    touched = 0
    open_sample = open_subject[::_SAMPLE].copy()
    if parts == 1:  # in this thread: waking numba's pool for one part costs more than it saves
        touched = _pair_runs(0, n, eligible, subject, ts, pair_start, pair_zone, open_subject, open_sample,
                             open_zone, near_subject, p_subject, p_key, p_ends, p_zone_start, runs, cap)
    else:
        for p in prange(parts):
            lo, hi = part_bounds(n, parts, p)
            touched += _pair_runs(lo, hi, eligible, subject, ts, pair_start, pair_zone, open_subject,
                                  open_sample, open_zone, near_subject, p_subject, p_key, p_ends,
                                  p_zone_start, runs, cap)
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
    if touched < 0 or near_touched < -(1 << 62):  # never (sums of zone numbers, of a few -1s at worst):
        return _failed(BAD_CELL)  # it keeps the touching loops
    return 0, out_fix, out_zone[:n_out]


_SAMPLE = 32  # open_subject's sampling for _sampled_block: blocks of two cache lines
_RUNS = 7  # per fix: own zones lo, hi; shared zones met lo, hi; open episodes lo, hi; permit (-1: none)


@cached_njit(nogil=True)
def _eligible_range(
    lo: int, hi: int, device: Any, subject: Any, fresh: Any, suspect: Any, cell: Any, src: Any, wearable: Any,
    cover_map: Any, n_sources: int, resolution: Any, eligible: Any, first_cover: Any,
) -> int:
    """eligible[i] and first_cover[i] (the fix's cell's first row among the shared zones' cover cells, -1
    if none) of the fixes lo..hi; 0, or BAD_* for the first bad eligible fix (then the rest are unset)."""
    for i in range(lo, hi):
        eligible[i] = fresh[i] and not suspect[i] and subject[i] >= 0 and wearable[device[i]]
        if eligible[i]:
            if (cell[i] >> np.uint64(52)) & np.uint64(15) != resolution:
                return BAD_CELL
            if src[i] < -n_sources or src[i] >= n_sources:
                return BAD_SOURCE
    for i in range(lo, hi):  # most fixes are in no shared zone's cover: one probe of a hash map says so
        first_cover[i] = key_index(cover_map, cell[i]) if eligible[i] else -1
    return 0


@cached_njit(nogil=True)
def _first_code(bad: Any) -> int:
    """The first nonzero of the parts' codes, or 0."""
    for code in bad:
        if code:
            return int(code)
    return 0


@cached_njit(nogil=True)
def _near_pairs(
    eligible: Any, first_cover: Any, subject: Any, cell: Any, cover_cells: Any, cover_zone: Any, shared: Any,
    zone_jur: Any, ancestors: Any,
) -> tuple[Any, Any, int]:
    """(subject, shared zone) pairs met by the batch, sorted by subject: a shared zone met by any fix of a
    subject is re-checked on all its fixes (leaving is seen). The int is of no use: it keeps the
    touching loop."""
    n = len(eligible)
    touched = 0  # the subjects' jurisdiction chains, read in one loop so that the misses overlap
    for i in range(n):
        if first_cover[i] >= 0:
            touched += ancestors[subject[i], 0]
    near_subject = np.empty(64, np.int64)
    near_zone = np.empty(64, np.int64)
    n_near = 0
    for i in range(n):
        k = first_cover[i]
        if k < 0:
            continue
        s = subject[i]
        while k < len(cover_cells) and cover_cells[k] == cell[i]:
            z = cover_zone[k]
            k += 1
            jur = zone_jur[z]
            if not shared[z] or jur < 0:
                continue
            for level in range(ancestors.shape[1]):
                if ancestors[s, level] == jur:
                    if n_near == len(near_subject):
                        near_subject, near_zone = grown(near_subject, 0), grown(near_zone, 0)
                    near_subject[n_near] = s
                    near_zone[n_near] = z
                    n_near += 1
                    break
    order = np.argsort(near_subject[:n_near])
    return near_subject[:n_near][order], near_zone[:n_near][order], touched


@cached_njit(nogil=True)
def _pair_runs(
    lo: int, hi: int, eligible: Any, subject: Any, ts: Any, pair_start: Any, pair_zone: Any,
    open_subject: Any, open_sample: Any, open_zone: Any, near_subject: Any, p_subject: Any, p_key: Any,
    p_ends: Any, p_zone_start: Any, runs: Any, cap: Any,
) -> int:
    """runs[i] and cap[i] (how many zones before repeats are dropped) of the fixes lo..hi; the int is of
    no use: it keeps the touching loop. Loop by loop, so that each loop's loads (its own zones, the open
    episodes' block) are independent of one another and their cache misses overlap."""
    for i in range(lo, hi):
        if eligible[i]:
            s = subject[i]
            runs[i, 0], runs[i, 1] = pair_start[s], pair_start[s + 1]
            runs[i, 4] = _sampled_block(open_sample, s)
    for i in range(lo, hi):
        if eligible[i]:
            s = subject[i]
            runs[i, 4] = _block_lower_bound(open_subject, s, runs[i, 4])
    for i in range(lo, hi):
        cap[i] = 0
        if not eligible[i]:
            continue
        s, t = subject[i], ts[i]
        runs[i, 2] = lower_bound(near_subject, s, 0, len(near_subject))
        runs[i, 3] = _run_end(near_subject, s, runs[i, 2])
        runs[i, 5] = _run_end(open_subject, s, runs[i, 4])
        p = -1
        if len(p_key):
            # PermitTable.destinations: the subject's permit started last at or before ts, if not ended
            p = lower_bound(p_key, s * (np.int64(1) << 42) + t + 1, 0, len(p_key)) - 1
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


@cached_njit(inline="always")
def _run_end(a: Any, v: int, lo: int) -> int:
    """The first index from lo (where a's run of v starts) past the run: a subject has a few entries."""
    while lo < len(a) and a[lo] == v:
        lo += 1
    return lo


@cached_njit(inline="always")
def _sampled_block(sample: Any, v: int) -> int:
    """Where in a (sampled every _SAMPLE-th into `sample`, a few KB that stay in cache) lower_bound(a, v)
    lies: at lo..lo + _SAMPLE - 1 (or len(a)) for the lo returned. A search of that block then waits on
    one or two cache misses, where a search of all of a (95k open episodes at 700k subjects) waited on
    six or more."""
    k = lower_bound(sample, v, 0, len(sample))
    return (k - 1) * _SAMPLE + 1 if k > 0 else 0


@cached_njit(inline="always")
def _block_lower_bound(a: Any, v: int, lo: int) -> int:
    """lower_bound(a, v) within the block _sampled_block found (searching up to lo + _SAMPLE finds len(a)
    too, when every entry is below v)."""
    return lower_bound(a, v, lo, min(lo + _SAMPLE, len(a)))


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
