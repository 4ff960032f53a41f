"""Micro-batching: decoded messages accumulate until N fixes or T milliseconds, then flush as one batch.

JSON fixes are appended to lists one by one; packed batches arrive as columns and are only concatenated."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from emwatch.ingest import protocol as p
from emwatch.ingest.decode import DeadLetter, Decoded
from emwatch.model import NO_BATT, NO_SEQ, FixColumns


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """Everything received in one flush window."""

    fixes: FixColumns
    events: list[tuple[str, p.DeviceEvent, bytes]]
    dead: list[DeadLetter]
    first_received: float  # monotonic seconds; for latency metrics
    messages: int
    receipts: list[tuple[int, int]]  # (mid, qos) of the MQTT messages, to acknowledge once committed
    connection: int  # which broker connection they came on (acks are only valid on that one)

    def __len__(self) -> int:
        return len(self.fixes) + len(self.events) + len(self.dead)


@dataclass(slots=True)
class BatchBuilder:
    """Appends decoded messages column-wise; `build()` hands the columns over as numpy arrays."""

    device_ids: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    lon: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    src: list[int] = field(default_factory=list)
    batt: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    events: list[tuple[str, p.DeviceEvent, bytes]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    first_received: float = 0.0
    messages: int = 0
    receipts: list[tuple[int, int]] = field(default_factory=list)
    connection: int = 0
    chunks: list[FixColumns] = field(default_factory=list)  # packed messages, and the rows listed before them
    _chunk_rows: int = 0

    def add(self, decoded: Decoded, receipt: tuple[int, int] | None = None, connection: int = 0) -> None:
        """Append one message's contents (and, from MQTT, its (mid, qos) and connection number)."""
        if receipt is not None:
            if self.receipts and connection != self.connection:
                raise ValueError("a batch holds messages of one connection only")
            self.receipts.append(receipt)
            self.connection = connection
        if self.messages == 0:
            self.first_received = time.monotonic()
        self.messages += 1
        nan = float("nan")
        codes = p.SOURCE_CODES
        for device_id, fix in decoded.fixes:
            self.device_ids.append(device_id)
            self.ts.append(fix.ts)
            self.lat.append(fix.lat)
            self.lon.append(fix.lon)
            self.acc.append(nan if fix.acc is None else fix.acc)
            self.src.append(codes[fix.src])
            self.batt.append(NO_BATT if fix.batt is None else fix.batt)
            self.seq.append(NO_SEQ if fix.seq is None else fix.seq)
        if decoded.columns:
            if self.device_ids:  # keep arrival order: the rows appended so far go first
                self.chunks.append(self._listed())
                self._clear_lists()
            self.chunks.extend(decoded.columns)
            self._chunk_rows += sum(len(c) for c in decoded.columns)
        self.events.extend(decoded.events)
        self.dead.extend(decoded.dead)

    @property
    def fix_count(self) -> int:
        return len(self.device_ids) + self._chunk_rows

    def build(self) -> IngestBatch:
        """The accumulated batch; the builder must not be reused afterwards."""
        fixes = self._listed()
        if self.chunks:
            fixes = _concatenate([*self.chunks, fixes] if self.device_ids else self.chunks)
        return IngestBatch(
            fixes, self.events, self.dead, self.first_received, self.messages, self.receipts, self.connection
        )

    def _clear_lists(self) -> None:
        """New lists (not cleared ones: the sealed chunk still holds the device id list)."""
        self.device_ids, self.ts, self.lat, self.lon = [], [], [], []
        self.acc, self.src, self.batt, self.seq = [], [], [], []

    def _listed(self) -> FixColumns:
        """The fixes appended one by one, as columns."""
        return FixColumns(
            self.device_ids,
            np.array(self.ts, dtype=np.int64),
            np.array(self.lat, dtype=np.float64),
            np.array(self.lon, dtype=np.float64),
            np.array(self.acc, dtype=np.float32),
            np.array(self.src, dtype=np.int8),
            np.array(self.batt, dtype=np.int16),
            np.array(self.seq, dtype=np.int64),
        )


def _concatenate(parts: list[FixColumns]) -> FixColumns:
    """One FixColumns of all rows, in order (always new arrays: chunks may be views of message payloads)."""
    device_ids: list[str] = []
    for part in parts:
        device_ids.extend(part.device_ids)
    return FixColumns(
        device_ids,
        *(np.concatenate([getattr(part, name) for part in parts])
          for name in ("ts", "lat", "lon", "acc", "src", "batt", "seq")),
    )
