"""FixColumns.take keeps every column's rows together, for any number of rows."""

from __future__ import annotations

import numpy as np
import pytest

from emwatch.model import NO_BATT, NO_SEQ, FixColumns


def columns(ids: list[str]) -> FixColumns:
    n = len(ids)
    return FixColumns(
        ids, np.arange(n, dtype=np.int64) * 1000, np.linspace(30.0, 30.1, n), np.linspace(120.0, 120.1, n),
        np.full(n, 8.0, dtype=np.float32), np.zeros(n, dtype=np.int8), np.full(n, NO_BATT, dtype=np.int16),
        np.full(n, NO_SEQ, dtype=np.int64),
    )


@pytest.mark.parametrize("rows", [[], [1], [2, 0], [0, 0, 2], [3, 2, 1, 0]])
def test_take_returns_the_rows_in_the_order_given(rows: list[int]) -> None:
    cols = columns(["a", "b", "c", "d"])
    taken = cols.take(np.array(rows, dtype=np.intp))
    assert taken.device_ids == [cols.device_ids[i] for i in rows]
    assert taken.ts.tolist() == [cols.ts[i] for i in rows]
    assert taken.lat.tolist() == [cols.lat[i] for i in rows]
    assert len(taken) == len(rows)


def test_taken_ids_read_like_the_list_of_those_ids_by_index_slice_and_iteration() -> None:
    cols = columns(["a", "b", "c", "d"])
    taken = cols.take(np.array([3, 1, 1], dtype=np.intp))
    ids = taken.device_ids
    assert [ids[0], ids[1], ids[2], ids[-1]] == ["d", "b", "b", "b"]
    assert taken.device_ids[1:] == ["b", "b"] and list(taken.device_ids) == ["d", "b", "b"]
    assert "".join(taken.device_ids) == "dbb" and repr(taken.device_ids) == "['d', 'b', 'b']"
    assert taken.device_ids != ["d", "b"] and taken.device_ids != "dbb"
    again = taken.take(np.array([2, 0], dtype=np.intp))  # a reordering of a reordering
    assert again.device_ids == ["b", "d"] and again.device_ids == columns(["b", "d"]).device_ids
    with pytest.raises(IndexError):
        taken.device_ids[3]
