"""The order the rules read a batch in: by device, then event time (a buffered burst as it happened)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def device_time_order(
    rows: NDArray[np.intp], device: NDArray[np.int32], ts: NDArray[np.int64]
) -> NDArray[np.intp]:
    """`rows` sorted by (device[row], ts[row], row): np.lexsort's order, stable.

    Packed into one int64 key per row (device, time since the batch's earliest fix, position) and
    sorted as numbers when the three fit in 63 bits, as they do for any batch spanning less than days:
    a fifth of lexsort's time for 2,000 fixes. Otherwise lexsort itself."""
    n = len(rows)
    if n < 2:
        return rows
    d, t = device[rows].astype(np.int64), ts[rows]
    t0, d_max = int(t.min()), int(d.max())
    span = int(t.max()) - t0
    pos_bits, t_bits = (n - 1).bit_length(), span.bit_length()
    if int(d.min()) < 0 or d_max.bit_length() + t_bits + pos_bits > 63:
        ordered: NDArray[np.intp] = rows[np.lexsort((t, d))]
        return ordered
    key = (d << (t_bits + pos_bits)) | ((t - t0) << pos_bits) | np.arange(n, dtype=np.int64)
    key.sort()
    ordered = rows[key & ((1 << pos_bits) - 1)]
    return ordered
