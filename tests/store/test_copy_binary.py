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


def test_rows_follow_the_order_given_within_each_shape() -> None:
    ids = ["b", "a", "cc", "d", "e"]  # two shapes: one-byte ids and the two-byte one
    n = np.array([1, 2, 3, 4, 5], dtype=np.int64)
    columns = [cb.text(ids), cb.fixed(n, ">i8")]
    order = np.array([4, 2, 1, 3, 0], dtype=np.intp)
    one_byte = [i for i in order.tolist() if len(ids[i]) == 1]
    expected = (cb.rows([cb.text([ids[i] for i in one_byte]), cb.fixed(n[one_byte], ">i8")])
                + cb.rows([cb.text(["cc"]), cb.fixed(n[[2]], ">i8")]))
    assert cb.rows(columns, order) == expected
    assert cb.rows(columns, order) != cb.rows(columns)  # the order given is not the rows' own
