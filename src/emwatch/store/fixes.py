"""Store fixes exactly once: binary COPY straight into `fixes`, merging through a staging table only
when some fix is already stored (a batch redelivered after a crash between COMMIT and PUBACK) or a
fix's subject must be looked up in PostgreSQL.

Writing each fix once, encoded column-wise, costs PostgreSQL and the service several times less than
staging every fix and merging it with ON CONFLICT (benchmarks/bench_writer.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Literal

import asyncpg
import numpy as np
from numpy.typing import NDArray

from emwatch.ingest.protocol import SOURCE_NAMES
from emwatch.model import NO_BATT, NO_SEQ, FixBatch
from emwatch.store import copy_binary as cb
from emwatch.store.minute_notes import MinuteNotes, Notes, minute_of, write_notes

COLUMNS = ("device_id", "ts", "lat", "lon", "acc", "src", "batt", "seq", "h3", "subject_id", "suspect")

# Same columns and types as `fixes`, so one payload fits both. Versioned name: pooled connections of a
# running older build keep their own temp table shape (fixes_in_v3).
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS fixes_in_v4 (
    device_id text COLLATE "C", ts timestamptz, lat float8, lon float8, acc real, src text, batt smallint,
    seq bigint, h3 bigint, subject_id text, suspect boolean
) ON COMMIT DELETE ROWS
"""
# A staged fix without a subject gets its device's, by one primary-key probe (coalesce evaluates it only
# then): the temp table has no statistics, so a join would hash the whole devices table every time.
_MERGE = f"""
INSERT INTO fixes ({", ".join(COLUMNS)})
SELECT device_id, ts, lat, lon, acc, src, batt, seq, h3,
       coalesce(subject_id, (SELECT d.subject_id FROM devices d WHERE d.id = s.device_id)), suspect
FROM fixes_in_v4 s
ON CONFLICT (minute, device_id, ts) DO NOTHING
"""


class FixPayload:
    """The fixes of some batches as binary COPY tuples: those whose subject is known, and the rest (their
    subject_id NULL, for the merge to look up)."""

    def __init__(self, batches: Sequence[FixBatch], notes: MinuteNotes | None = None) -> None:
        resolved: list[tuple[FixBatch, NDArray[np.intp] | None]] = []
        unresolved: list[tuple[FixBatch, NDArray[np.intp] | None]] = []
        for batch in batches:
            known = batch.subject >= 0 if batch.subject_ids else np.zeros(len(batch), dtype=bool)
            if known.all():
                resolved.append((batch, None))
            elif not known.any():
                unresolved.append((batch, None))
            else:
                resolved.append((batch, np.flatnonzero(known)))
                unresolved.append((batch, np.flatnonzero(~known)))
        # One encoding per section, not per batch: numpy's per-call overhead is paid once per transaction.
        self.resolved = [encode_rows(resolved, with_subject=True)] if resolved else []
        self.unresolved = [encode_rows(unresolved, with_subject=False)] if unresolved else []
        self.resolved_rows = sum(len(b) if r is None else len(r) for b, r in resolved)
        self.unresolved_rows = sum(len(b) if r is None else len(r) for b, r in unresolved)
        # Without the writer's memory of what it noted, every pair is noted.
        self.notes: Notes = (notes or MinuteNotes()).take(batches)

    def stream(self, *sections: list[bytes]) -> memoryview:
        """One COPY stream of the given sections (self.resolved, self.unresolved); a memoryview, because
        asyncpg takes bytes for a file path."""
        parts = [part for section in sections for part in section]
        return memoryview(b"".join([cb.HEADER, *parts, cb.TRAILER]))


def encode_rows(parts: Sequence[tuple[FixBatch, NDArray[np.intp] | None]], *, with_subject: bool) -> bytes:
    """Binary COPY tuples, in COLUMNS order, of the fixes of each (batch, rows or None for all);
    subject_id from the batch's registry ids (every row must have one), else NULL."""
    picked = [b if r is None else _take(b, r) for b, r in parts]

    def joined(name: str, of_fixes: bool = True) -> NDArray[Any]:
        arrays = [getattr(b.fixes if of_fixes else b, name) for b in picked]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    ts, lat, lon, acc, src, batt, seq = map(joined, ("ts", "lat", "lon", "acc", "src", "batt", "seq"))
    device, cell, suspect = (joined(name, of_fixes=False) for name in ("device", "cell", "suspect"))
    if picked[0].device_ids and all(b.device_ids is picked[0].device_ids for b in picked):  # one registry
        device_id = cb.take(_DEVICE_LABELS.of(picked[0].device_ids), device)
    else:
        device_id = cb.text([d for b in picked for d in b.fixes.device_ids])
    if with_subject and all(b.subject_ids is picked[0].subject_ids for b in picked):
        subject_id = cb.take(_SUBJECT_LABELS.of(picked[0].subject_ids), joined("subject", of_fixes=False))
    elif with_subject:
        subject_id = cb.text([s for b in picked for s in _pick(b.subject_ids, b.subject.tolist())])
    else:
        subject_id = cb.null(len(device))
    # Rows in primary-key order, (minute, device) (the registry numbers devices by id): PostgreSQL then
    # inserts into the btree leaf after leaf instead of at random (under the former (device_id, ts) key,
    # 4.0 vs 6.9 µs of backend CPU per fix). A stable sort keeps a device's arrival order.
    order = np.argsort((minute_of(ts) << 32) | device.astype(np.int64), kind="stable")
    return cb.rows([
        device_id,
        cb.timestamptz_ms(ts),
        cb.fixed(lat, ">f8"),
        cb.fixed(lon, ">f8"),
        cb.fixed(acc, ">f4", null=np.isnan(acc)),
        cb.categorical(src, SOURCE_NAMES),
        cb.fixed(batt, ">i2", null=batt == NO_BATT),
        cb.fixed(seq, ">i8", null=seq == NO_SEQ),
        cb.fixed(cell.view(np.int64), ">i8"),
        subject_id,
        cb.fixed(suspect, "?"),
    ], order)


def _take(batch: FixBatch, rows: NDArray[np.intp]) -> FixBatch:
    return dataclasses.replace(
        batch, fixes=batch.fixes.take(rows), device=batch.device[rows], subject=batch.subject[rows],
        cell=batch.cell[rows], fresh=batch.fresh[rows], suspect=batch.suspect[rows],
    )


class _Labels:
    """The ids of the registry last seen (subjects, devices) as a lookup column: built once per registry
    (it is rebuilt, as new lists, whenever the registry reloads), gathered per fix at C speed."""

    def __init__(self) -> None:
        self._latest: tuple[Sequence[str], cb.Column] | None = None

    def of(self, ids: Sequence[str]) -> cb.Column:
        if self._latest is None or self._latest[0] is not ids:
            self._latest = (ids, cb.text(list(ids)))
        return self._latest[1]


_SUBJECT_LABELS, _DEVICE_LABELS = _Labels(), _Labels()


def _pick(items: Sequence[str], index: list[int]) -> Sequence[str]:
    """items[i] for each i (itemgetter fetches in C; with one index it returns the item itself)."""
    return list(itemgetter(*index)(items)) if len(index) > 1 else [items[i] for i in index]


Duplicates = Literal["merge", "raise", "merge_all"]


async def write_fixes(conn: asyncpg.Connection, batches: Sequence[FixBatch], *,
                      duplicates: Duplicates = "merge") -> int:
    """Store the fixes of several batches, inside the caller's transaction; returns how many were new
    (a redelivered fix is not). Call once per transaction: the staging table empties at COMMIT."""
    return await write_payload(conn, FixPayload([b for b in batches if len(b)]), duplicates=duplicates)


async def write_payload(conn: asyncpg.Connection, payload: FixPayload, *,
                        duplicates: Duplicates = "merge") -> int:
    """`write_fixes` of an encoded payload. How a fix stored already (redelivered) is met:
      merge      the direct COPY runs in a savepoint; on a duplicate, everything goes through the merge;
      raise      no savepoint (one subtransaction and two round trips less): a duplicate raises
                 UniqueViolationError and aborts the caller's transaction, to be written again with
      merge_all  everything through the merge at once."""
    if not payload.resolved_rows + payload.unresolved_rows:
        return 0
    if not conn.is_in_transaction():  # the savepoint and the staging table both need the caller's
        raise RuntimeError("write_fixes runs inside a transaction")
    await write_notes(conn, payload.notes)
    return await _write_rows(conn, payload, duplicates)


async def _write_rows(conn: asyncpg.Connection, payload: FixPayload, duplicates: Duplicates) -> int:
    if duplicates == "merge_all":
        return await merge_fixes(conn, payload.stream(payload.resolved, payload.unresolved))
    stored = 0
    if payload.resolved_rows and duplicates == "raise":
        status = await conn.copy_to_table(
            "fixes", source=payload.stream(payload.resolved), columns=COLUMNS, format="binary"
        )
        stored = int(status.rsplit(" ", 1)[-1])
    elif payload.resolved_rows:
        try:
            async with conn.transaction():  # a savepoint: a duplicate undoes only this COPY
                status = await conn.copy_to_table(
                    "fixes", source=payload.stream(payload.resolved), columns=COLUMNS, format="binary"
                )
            stored = int(status.rsplit(" ", 1)[-1])
        except asyncpg.UniqueViolationError:
            return await merge_fixes(conn, payload.stream(payload.resolved, payload.unresolved))
    if payload.unresolved_rows:
        stored += await merge_fixes(conn, payload.stream(payload.unresolved))
    return stored


async def merge_fixes(conn: asyncpg.Connection, stream: memoryview) -> int:
    """Stage a binary COPY stream of fixes and insert those not stored yet; returns how many were new."""
    await conn.execute(_STAGING)
    await conn.copy_to_table("fixes_in_v4", source=stream, columns=COLUMNS, format="binary")
    status = await conn.execute(_MERGE)
    return int(status.rsplit(" ", 1)[-1])
