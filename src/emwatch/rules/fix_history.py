"""The late-fix history (rules/reorder.py): every device's fixes of the reorder horizon, in arrival
chunks, kept small and searchable by device.

A national fleet at 70k fixes/s holds 21M fixes in a 300 s horizon: 42 bytes a fix as they arrive
(880 MB), 22 bytes packed (460 MB). Each chunk is sorted by device (the rules read a batch in that
order already), so a replay finds its devices' fixes by binary search, not by a scan of every fix.
Packing loses nothing:
- ts: uint32 ms after the chunk's earliest fix (int64 when a chunk spans more than 49 days);
- lat, lon: int32 units of 1e-7 degree when every value of the chunk is exactly k / 1e7, which is what
  a decimal of up to 7 places parses to (k / 1e7 is the double nearest k * 10^-7); float64 otherwise;
- no H3 cell: it is recomputed for the few fixes a replay reads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emwatch.geo.cells import cells_for
from emwatch.model import FixBatch, FixColumns

NEVER = np.iinfo(np.int64).min
DEG_UNITS = 1e7  # packed coordinates: int32 units of 1e-7 degree (|lon| <= 180 fits: 1.8e9 < 2**31)


@dataclass(frozen=True, slots=True)
class FixRows:
    """The columns a replay needs, one row per fix (device numbers of the current registry)."""

    # Typed loosely: the columns are handled generically (take, concat) by their field names.
    device: NDArray[Any]  # int32
    ts: NDArray[Any]  # int64
    lat: NDArray[Any]
    lon: NDArray[Any]
    acc: NDArray[Any]  # float32
    src: NDArray[Any]  # int8
    cell: NDArray[Any]  # uint64
    suspect: NDArray[Any]  # bool

    @classmethod
    def of(cls, batch: FixBatch, rows: NDArray[np.intp] | None = None) -> FixRows:
        f = batch.fixes
        cols = (batch.device, f.ts, f.lat, f.lon, f.acc, f.src, batch.cell, batch.suspect)
        return cls(*cols) if rows is None else cls(*(c[rows] for c in cols))

    def take(self, rows: NDArray[np.intp]) -> FixRows:
        return FixRows(*(getattr(self, n)[rows] for n in FixRows.__slots__))

    @staticmethod
    def concat(parts: list[FixRows]) -> FixRows:
        return FixRows(*(np.concatenate([getattr(p, n) for p in parts]) for n in FixRows.__slots__))

    def batch(self, device_ids: list[str], device_subject: NDArray[np.int32]) -> FixBatch:
        """As a batch of fresh fixes (a replay judges every one of them)."""
        n = len(self.ts)
        fixes = FixColumns(
            [device_ids[d] for d in self.device.tolist()], self.ts, self.lat, self.lon, self.acc, self.src,
            np.full(n, -1, np.int16), np.zeros(n, np.int64),
        )
        subject = device_subject[self.device]
        return FixBatch(fixes, self.device, subject, self.cell, np.ones(n, bool), self.suspect)


EMPTY_ROWS = FixRows(
    np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, np.float32),
    np.empty(0, np.int8), np.empty(0, np.uint64), np.empty(0, bool),
)


@dataclass(frozen=True, slots=True)
class PackedChunk:
    """One arrival chunk of fixes, sorted by device, packed without loss (see the module's docstring)."""

    newest: int  # ts of the chunk's newest fix
    t0: int  # ts = t0 + dt
    device: NDArray[np.int32]  # sorted
    dt: NDArray[Any]  # uint32, or int64 for a chunk spanning more than 2**32 ms
    lat: NDArray[Any]  # int32 in 1e-7 degree, or float64
    lon: NDArray[Any]
    acc: NDArray[np.float32]
    src: NDArray[np.int8]
    suspect: NDArray[np.bool_]

    @classmethod
    def pack(cls, rows: FixRows) -> PackedChunk:
        device = rows.device
        if len(device) > 1 and not bool((device[1:] >= device[:-1]).all()):
            rows = rows.take(np.argsort(device, kind="stable"))
        ts = rows.ts
        t0 = int(ts.min())
        dt = ts - t0
        small = int(dt.max()) < 2**32
        return cls(
            int(ts.max()), t0, rows.device.astype(np.int32), dt.astype(np.uint32) if small else dt,
            _pack_degrees(rows.lat), _pack_degrees(rows.lon), rows.acc.astype(np.float32),
            rows.src.astype(np.int8), rows.suspect.astype(bool),
        )

    def __len__(self) -> int:
        return len(self.device)

    @property
    def nbytes(self) -> int:
        cols = (self.device, self.dt, self.lat, self.lon, self.acc, self.src, self.suspect)
        return sum(c.nbytes for c in cols)

    def ts_at(self, rows: NDArray[np.intp]) -> NDArray[np.int64]:
        return self.dt[rows].astype(np.int64) + self.t0

    def rows_of(self, devices: NDArray[np.int32], start: NDArray[np.int64]) -> NDArray[np.intp]:
        """Rows of the (sorted, unique) `devices` no older than each one's `start`."""
        lo = np.searchsorted(self.device, devices, "left")
        count = np.searchsorted(self.device, devices, "right") - lo
        total = int(count.sum())
        if total == 0:
            return np.empty(0, np.intp)
        owner = np.repeat(np.arange(len(devices)), count)
        # lo of each row's device, then its place within that device's run: concatenated aranges
        first = np.cumsum(count) - count
        rows = np.repeat(lo, count) + (np.arange(total) - np.repeat(first, count))
        recent: NDArray[np.intp] = rows[self.ts_at(rows) >= start[owner]]
        return recent

    def unpack(self, rows: NDArray[np.intp] | None = None) -> FixRows:
        """The fixes at `rows` (all if None) as they came, but with no cell (zeros)."""
        at = np.arange(len(self)) if rows is None else rows
        return FixRows(
            self.device[at], self.ts_at(at), _unpack_degrees(self.lat[at]), _unpack_degrees(self.lon[at]),
            self.acc[at], self.src[at], np.zeros(len(at), np.uint64), self.suspect[at],
        )


def _pack_degrees(x: NDArray[np.float64]) -> NDArray[Any]:
    units = np.rint(x * DEG_UNITS)
    if len(x) and float(np.abs(units).max()) < 2**31 and np.array_equal(units / DEG_UNITS, x):
        return units.astype(np.int32)
    return np.array(x, dtype=np.float64)  # a copy: a view would keep the whole batch's column alive


def _unpack_degrees(x: NDArray[Any]) -> NDArray[np.float64]:
    return x.astype(np.float64) / DEG_UNITS if x.dtype == np.int32 else x


class FixHistory:
    """Every device's fixes of the last `horizon_ms` (by the newest fix seen), in packed arrival chunks."""

    def __init__(self, horizon_ms: int, h3_resolution: int) -> None:
        self.horizon_ms = horizon_ms
        self.h3_resolution = h3_resolution
        self._chunks: deque[PackedChunk] = deque()
        self._newest = NEVER
        self.forgotten = NEVER  # newest ts of any fix already dropped: a replay must start after it
        self.nbytes = 0  # the packed columns' bytes
        self.fixes = 0

    def add(self, rows: FixRows) -> None:
        if len(rows.ts) == 0:
            return
        chunk = PackedChunk.pack(rows)
        self._chunks.append(chunk)
        self.nbytes += chunk.nbytes
        self.fixes += len(chunk)
        self._newest = max(self._newest, chunk.newest)
        while self._chunks and self._chunks[0].newest < self._newest - self.horizon_ms:
            old = self._chunks.popleft()
            self.nbytes -= old.nbytes
            self.fixes -= len(old)
            self.forgotten = max(self.forgotten, old.newest)

    def since(self, devices: NDArray[np.int32], start: NDArray[np.int64]) -> FixRows:
        """Kept fixes of `devices` (sorted, unique) no older than each one's `start`, with their cells."""
        parts = []
        for chunk in self._chunks:
            rows = chunk.rows_of(devices, start)
            if len(rows):
                parts.append(chunk.unpack(rows))
        if not parts:
            return EMPTY_ROWS
        kept = FixRows.concat(parts)
        cells = cells_for(kept.lat, kept.lon, self.h3_resolution)
        return FixRows(kept.device, kept.ts, kept.lat, kept.lon, kept.acc, kept.src, cells, kept.suspect)

    def remap(self, new_of_old: NDArray[np.int32]) -> None:
        """Carry the kept fixes over to a new registry's device numbering (unknown devices dropped)."""
        chunks: deque[PackedChunk] = deque()
        for chunk in self._chunks:
            rows = chunk.unpack()
            device = new_of_old[rows.device]
            keep = np.flatnonzero(device >= 0)
            if len(keep):
                moved = rows.take(keep)
                rest = (getattr(moved, n) for n in FixRows.__slots__[1:])
                chunks.append(PackedChunk.pack(FixRows(device[keep], *rest)))
        self._chunks = chunks
        self.nbytes = sum(c.nbytes for c in chunks)
        self.fixes = sum(len(c) for c in chunks)
