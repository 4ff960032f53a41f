"""Keep `device_minutes` (migration 015): the first and newest minute of each (subject, device) pair's
fixes, which is how a device's fixes are found under the minute-led key of `fixes`.

A device reporting every 10 s opens a new minute about once in 6 fixes, so the service remembers the
minutes it has noted per device and writes only pairs whose minute falls outside them: a row per fix
(a statement trigger over the inserted rows) cost PostgreSQL 4.4 µs per fix, more than the whole COPY
(benchmarks/bench_history.py, RESULTS.md session 10). Whatever writes fixes otherwise must note them
too: `SELECT emwatch_note_minutes(first, last)` rebuilds the pairs of a span of minutes from `fixes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np
from numpy.typing import NDArray

from emwatch.model import FixBatch

EPOCH_2000_MS = 946_684_800_000
UNSEEN = -2  # a device's subject before any note (-1 is "none known": PostgreSQL looks it up)

# A NULL subject is the device's own in PostgreSQL, as the fixes merge stores it. Aggregated first: one
# upsert may not touch a row twice. Key order, so two writers lock shared pairs in the same order.
_NOTE = """
INSERT INTO device_minutes AS m (subject_id, device_id, first_minute, minute)
SELECT s, d, min(f), max(l) FROM (
    SELECT coalesce(n.s, (SELECT v.subject_id FROM devices v WHERE v.id = n.d), '') AS s, n.d, n.f, n.l
    FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) AS n(s, d, f, l)
) a GROUP BY s, d ORDER BY s, d
ON CONFLICT (subject_id, device_id) DO UPDATE
    SET first_minute = least(m.first_minute, excluded.first_minute),
        minute = greatest(m.minute, excluded.minute)
    WHERE excluded.minute > m.minute OR excluded.first_minute < m.first_minute
"""


def minute_of(ts_ms: NDArray[np.int64]) -> NDArray[np.int64]:
    """The `minute` key column of fixes at these times: minutes since 2000-01-01 UTC (emwatch_minute)."""
    return (ts_ms - EPOCH_2000_MS) // 60_000


@dataclass(frozen=True, slots=True)
class Notes:
    """(subject, device) pairs with the first and newest minute of their fixes in one transaction."""

    subject_ids: list[str | None]
    device_ids: list[str]
    first: NDArray[np.int32]
    last: NDArray[np.int32]

    @classmethod
    def none(cls) -> Notes:
        return cls([], [], np.empty(0, np.int32), np.empty(0, np.int32))

    def __len__(self) -> int:
        return len(self.device_ids)


class MinuteNotes:
    """The minutes noted per device of one registry numbering, for one subject each (its latest)."""

    def __init__(self) -> None:
        self._device_ids: Sequence[str] = ()
        self._subject_ids: Sequence[str] = ()
        self._subject = np.empty(0, dtype=np.int32)
        self._first = np.empty(0, dtype=np.int32)
        self._last = np.empty(0, dtype=np.int32)

    def clear(self) -> None:
        """Forget every note: a transaction that wrote some failed (its retry notes them again)."""
        self._device_ids = self._subject_ids = ()

    def take(self, batches: Sequence[FixBatch]) -> Notes:
        """The pairs of these batches not noted yet, counted as noted from now on."""
        parts = [self._take(b) if b.device_ids else _all_pairs(b) for b in batches if len(b)]
        if not parts:
            return Notes.none()
        return Notes(
            [s for p in parts for s in p.subject_ids], [d for p in parts for d in p.device_ids],
            np.concatenate([p.first for p in parts]), np.concatenate([p.last for p in parts]),
        )

    def _take(self, batch: FixBatch) -> Notes:
        if batch.device_ids is not self._device_ids or batch.subject_ids is not self._subject_ids:
            self._renumber(batch.device_ids, batch.subject_ids)
        device = batch.device
        subject = batch.subject if batch.subject_ids else np.full(len(batch), -1, np.int32)
        minute = minute_of(batch.fixes.ts).astype(np.int32)
        lo, hi = self._first[device], self._last[device]
        new = np.flatnonzero((self._subject[device] != subject) | (minute < lo) | (minute > hi))
        if not len(new):
            return Notes.none()
        pair, first, last = _spans(device[new].astype(np.int64) << 32 | (subject[new] + 1), minute[new])
        d, s = (pair >> 32).astype(np.intp), (pair & 0xFFFFFFFF).astype(np.int32) - 1
        # A device's notes follow its newest subject, from the minute after the one it took over in; a
        # fix of an earlier one is noted (again), not kept.
        same = self._subject[d] == s
        self._first[d[same]] = np.minimum(self._first[d[same]], first[same])
        self._last[d[same]] = np.maximum(self._last[d[same]], last[same])
        newer = ~same & (last > self._last[d])
        k = d[newer]
        self._subject[k], self._first[k], self._last[k] = s[newer], first[newer], last[newer]
        subject_ids = [None if i < 0 else batch.subject_ids[i] for i in s.tolist()]
        return Notes(subject_ids, [batch.device_ids[i] for i in d.tolist()], first, last)

    def _renumber(self, device_ids: Sequence[str], subject_ids: Sequence[str]) -> None:
        """Carry the notes over to a new registry's numbering of devices and subjects, by id."""
        n = len(device_ids)
        subject, first, last = np.full(n, UNSEEN, np.int32), np.zeros(n, np.int32), np.zeros(n, np.int32)
        if len(self._device_ids):
            old = {d: i for i, d in enumerate(self._device_ids)}
            pairs = [(i, o) for i, d in enumerate(device_ids) if (o := old.get(d)) is not None]
            if pairs:
                to, source = np.array(pairs, dtype=np.intp).T
                now = {s: i for i, s in enumerate(subject_ids)}
                # -1 (none known) and UNSEEN index the two last entries, and stay what they are.
                carried = [now.get(s, UNSEEN) for s in self._subject_ids]
                renumbered = np.array([*carried, UNSEEN, -1], np.int32)
                subject[to] = renumbered[self._subject[source]]
                first[to], last[to] = self._first[source], self._last[source]
        self._device_ids, self._subject_ids = device_ids, subject_ids
        self._subject, self._first, self._last = subject, first, last


def _spans(key: NDArray[np.int64], minute: NDArray[np.int32]) -> tuple[NDArray[np.int64], NDArray[np.int32],
                                                                       NDArray[np.int32]]:
    """Per distinct key: (key, its first minute, its newest minute)."""
    keys, inverse = np.unique(key, return_inverse=True)
    first = np.full(len(keys), np.iinfo(np.int32).max, np.int32)
    last = np.full(len(keys), np.iinfo(np.int32).min, np.int32)
    np.minimum.at(first, inverse, minute)
    np.maximum.at(last, inverse, minute)
    return keys, first, last


def _all_pairs(batch: FixBatch) -> Notes:
    """Every pair of a batch without registry numbering (tools, tests): by id, nothing remembered."""
    ids = list(batch.fixes.device_ids)
    subjects: list[str | None] = (
        [None if s < 0 else batch.subject_ids[s] for s in batch.subject.tolist()] if batch.subject_ids
        else [None] * len(ids)
    )
    minute = minute_of(batch.fixes.ts).astype(np.int32)
    spans: dict[tuple[str | None, str], tuple[int, int]] = {}
    for key, m in zip(zip(subjects, ids, strict=True), minute.tolist(), strict=True):
        f, last = spans.get(key, (m, m))
        spans[key] = (min(f, m), max(last, m))
    first, last = (np.array([v[i] for v in spans.values()], np.int32) for i in (0, 1))
    return Notes([k[0] for k in spans], [k[1] for k in spans], first, last)


async def write_notes(conn: asyncpg.Connection, notes: Notes) -> None:
    """Upsert the pairs' minutes, inside the caller's transaction."""
    if len(notes):
        await conn.execute(
            _NOTE, notes.subject_ids, notes.device_ids, notes.first.tolist(), notes.last.tolist()
        )
