"""Binary COPY payloads built with numpy read back in PostgreSQL as the values they encode."""

from __future__ import annotations

import asyncpg
import numpy as np

from emwatch.store import copy_binary as cb


async def copy_back(conn: asyncpg.Connection, columns: list[cb.Column]) -> list[tuple[object, ...]]:
    await conn.execute("CREATE TEMP TABLE t (name text, n bigint, x real, kind text, on_ boolean)")
    await conn.copy_to_table("t", source=memoryview(cb.stream(columns)), format="binary")
    return [tuple(r) for r in await conn.fetch("SELECT * FROM t ORDER BY n")]


async def test_values_of_every_shape_read_back_unchanged(subject_db: asyncpg.Connection) -> None:
    names = ["a", "dev-0001", "", "été", "ok"]  # lengths vary, non-ASCII, empty
    n = np.array([5, -2, 0, 2**40, 7], dtype=np.int64)
    x = np.array([1.5, np.nan, -3.25, 0.0, 2.0], dtype=np.float32)
    kind = np.array([0, 1, 2, 1, 0])
    rows = await copy_back(subject_db, [
        cb.text(names),
        cb.fixed(n, ">i8"),
        cb.fixed(x, ">f4", null=np.isnan(x)),
        cb.categorical(kind, ["gps", "wifi", None]),
        cb.fixed(np.array([True, False, True, False, True]), "?"),
    ])
    assert rows == [
        ("dev-0001", -2, None, "wifi", False),
        ("", 0, -3.25, None, True),
        ("a", 5, 1.5, "gps", True),
        ("ok", 7, 2.0, "gps", True),
        ("été", 2**40, 0.0, "wifi", False),
    ]


async def test_ids_of_one_length_and_a_column_of_nulls(subject_db: asyncpg.Connection) -> None:
    ids = [f"d-{i:03d}" for i in range(300)]
    rows = await copy_back(subject_db, [
        cb.text(ids), cb.fixed(np.arange(300), ">i8"), cb.null(300), cb.null(300),
        cb.fixed(np.zeros(300, dtype=bool), "?"),
    ])
    assert rows == [(d, i, None, None, False) for i, d in enumerate(ids)]


def test_no_rows_make_an_empty_stream() -> None:
    assert cb.stream([cb.text([]), cb.fixed(np.empty(0, np.int64), ">i8")]) == cb.HEADER + cb.TRAILER
