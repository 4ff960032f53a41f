"""PostgreSQL binary COPY payloads built column-wise with numpy, instead of a Python tuple per row.

Every field of a row is (int32 big-endian length, or -1 for NULL; then the value's bytes). Each column
gets a slot as wide as its widest value in a (rows, width) byte matrix; a mask of the bytes actually
used, read in row-major order, concatenates the rows. Cost is a few numpy passes per column, not a
Python call per value (benchmarks/bench_writer.py measures both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: binary timestamptz counts from it


@dataclass(frozen=True, slots=True)
class Column:
    """One column's values as a byte matrix: row i's value is data[i, :length[i]] (length -1: NULL)."""

    data: NDArray[np.uint8]  # (rows, width)
    length: NDArray[np.int32]


def fixed(values: NDArray[np.generic], pg_dtype: str, null: NDArray[np.bool_] | None = None) -> Column:
    """A fixed-width column (int2/int4/int8/float4/float8/bool as numpy dtype strings, e.g. '>i8')."""
    arr = np.ascontiguousarray(values, dtype=np.dtype(pg_dtype))
    data = arr.view(np.uint8).reshape(len(arr), arr.dtype.itemsize)
    length = np.full(len(arr), arr.dtype.itemsize, dtype=np.int32)
    if null is not None:
        length[null] = -1
    return Column(data, length)


def timestamptz_ms(ms: NDArray[np.int64]) -> Column:
    """Epoch milliseconds as timestamptz (microseconds since 2000-01-01)."""
    return fixed(ms.astype(np.int64) * 1000 - PG_EPOCH_US, ">i8")


def text(values: Sequence[str]) -> Column:
    """A text column from Python strings (UTF-8; PostgreSQL text holds no NUL, so NUL padding is safe)."""
    n = len(values)
    length = np.fromiter(map(len, values), dtype=np.int32, count=n)
    joined = "".join(values)
    if n and joined.isascii() and (length == length[0]).all():  # ids of one format: no padding to do
        raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
        return Column(raw.reshape(n, int(length[0])), length)
    try:  # numpy pads ASCII str to fixed-width bytes in C
        padded = np.array(values, dtype=bytes) if n else np.empty(0, dtype="S1")
    except UnicodeEncodeError:
        parts = [v.encode() for v in values]
        length = np.fromiter(map(len, parts), dtype=np.int32, count=n)
        padded = np.array(parts, dtype=bytes)
    return Column(padded.view(np.uint8).reshape(n, padded.dtype.itemsize), length)


def null(rows: int) -> Column:
    """A column of NULLs, whatever its type."""
    return Column(np.empty((rows, 0), dtype=np.uint8), np.full(rows, -1, dtype=np.int32))


def categorical(codes: NDArray[np.integer], labels: Sequence[str | None]) -> Column:
    """A text column whose values are labels[code] (None: NULL), e.g. a small enum."""
    table = text([label or "" for label in labels])
    length = table.length.copy()
    length[[i for i, label in enumerate(labels) if label is None]] = -1
    return take(Column(table.data, length), codes)


def take(table: Column, codes: NDArray[np.integer]) -> Column:
    """The column of table's values at `codes` (a lookup table of labels, built once, gathered often)."""
    idx = np.asarray(codes, dtype=np.intp)
    return Column(table.data[idx], table.length[idx])


def stream(columns: Sequence[Column]) -> bytes:
    """A whole binary COPY stream (header, tuples, trailer) of these columns."""
    return HEADER + rows(columns) + TRAILER


def rows(columns: Sequence[Column], order: NDArray[np.intp] | None = None) -> bytes:
    """The tuples of these columns, without header or trailer (streams concatenate them); rows come out
    grouped by shape (which fields are NULL, how long each text is), order being of no meaning to COPY.
    Within a shape they follow `order` (a permutation of the rows) when given, else their own order."""
    n = len(columns[0].length)
    if n == 0:
        return b""
    lengths = np.stack([c.length for c in columns], axis=1)
    shape_of, shapes = _shapes(lengths)
    rank = None
    if order is not None and len(shapes) > 1:
        rank = np.empty(n, dtype=np.intp)
        rank[order] = np.arange(n)
    parts = []
    for g, shape in enumerate(shapes):
        members = np.flatnonzero(shape_of == g) if len(shapes) > 1 else None
        # Whole tuples are permuted once, after the columns were copied in at C speed in their own order:
        # cheaper than gathering each column in the order given.
        permute = order if members is None else None if rank is None else np.argsort(rank[members])
        parts.append(_rows_of_shape(columns, shape.tolist(), members, permute))
    return b"".join(parts)


# Fields of these sizes copy as integers (numpy's fast strided loops), bytes unchanged; others as void.
_FIELD = {1: "u1", 2: "u2", 4: "u4", 8: "u8"}


def _rows_of_shape(columns: Sequence[Column], shape: list[int], members: NDArray[np.intp] | None,
                   permute: NDArray[np.intp] | None = None) -> bytes:
    """Tuples of rows that all have this shape (`members`, or all rows), then reordered by `permute` when
    given: one template row (field count, lengths) broadcast, then each value copied as one fixed-size
    field of a structured array (a strided copy per column)."""
    template = bytearray(len(columns).to_bytes(2, "big"))
    names, formats, offsets = [], [], []
    for j, length in enumerate(shape):
        template += length.to_bytes(4, "big", signed=True)
        if length > 0:
            names.append(f"c{j}")
            formats.append(_FIELD.get(length, f"V{length}"))
            offsets.append(len(template))
            template += bytes(length)
    n = len(columns[0].length) if members is None else len(members)
    layout = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": len(template)})
    out = np.empty(n, dtype=layout)
    out.view(np.uint8).reshape(n, len(template))[:] = np.frombuffer(bytes(template), dtype=np.uint8)
    for j, length in enumerate(shape):
        if length > 0:
            data = columns[j].data if members is None else columns[j].data[members]
            out[f"c{j}"] = np.ascontiguousarray(data[:, :length]).view(layout[f"c{j}"]).reshape(n)
    if permute is None:
        return out.tobytes()
    # as raw rows of bytes: indexing the structured array itself would copy its fields, not the template
    return np.take(out.view(np.uint8).reshape(n, len(template)), permute, axis=0).tobytes()


def _shapes(lengths: NDArray[np.int32]) -> tuple[NDArray[np.intp], NDArray[np.int32]]:
    """Each row's shape number, and the distinct shapes (rows of field lengths)."""
    first = lengths[0]
    varying = np.flatnonzero((lengths != first).any(axis=0))
    if not len(varying):
        return np.zeros(len(lengths), dtype=np.intp), first[None, :]
    span = lengths[:, varying].max(axis=0).astype(np.int64) + 2  # a length is -1 .. max
    if np.prod(span.astype(float)) < 2.0**62:  # one int64 key per row: far cheaper than unique(axis=0)
        key = np.zeros(len(lengths), dtype=np.int64)
        for j, s in zip(varying.tolist(), span.tolist(), strict=True):
            key = key * s + lengths[:, j] + 1
        _, first_row, shape_of = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, first_row, shape_of = np.unique(lengths, axis=0, return_index=True, return_inverse=True)
    return shape_of.reshape(-1), lengths[first_row]
