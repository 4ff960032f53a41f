"""A batch is read by device, then event time; equal (device, time) rows keep their arrival order."""

from __future__ import annotations

import numpy as np
import pytest

from emwatch.rules.batch_order import device_time_order

T0 = 1_717_200_000_000


def lexsorted(rows: np.ndarray, device: np.ndarray, ts: np.ndarray) -> np.ndarray:
    return rows[np.lexsort((ts[rows], device[rows]))]


@pytest.mark.parametrize("span_ms", [0, 1, 10_000, 3_600_000, 40 * 86_400_000])
def test_the_order_is_lexsorts_for_any_span_of_event_times(span_ms: int) -> None:
    rng = np.random.default_rng(span_ms)
    n = 3_000
    device = rng.integers(0, 700_000, n).astype(np.int32)
    device[rng.integers(0, n, 500)] = device[0]  # many fixes of one device, some at one instant
    ts = T0 + rng.integers(0, span_ms + 1, n).astype(np.int64)
    rows = np.flatnonzero(rng.random(n) < 0.9)  # the known devices' rows
    assert np.array_equal(device_time_order(rows, device, ts), lexsorted(rows, device, ts))


def test_times_too_far_apart_to_pack_fall_back_to_lexsort_with_the_same_answer() -> None:
    device = np.array([3, 1, 3, 1, 2], dtype=np.int32)
    ts = np.array([2**62, -(2**62), -5, 2**62, 5], dtype=np.int64)  # a span of 2**63 ms does not fit
    rows = np.arange(5)
    assert device_time_order(rows, device, ts).tolist() == [1, 3, 4, 2, 0]


def test_rows_of_one_device_and_instant_keep_arrival_order() -> None:
    device = np.array([7, 7, 2, 7], dtype=np.int32)
    ts = np.full(4, T0, dtype=np.int64)
    assert device_time_order(np.arange(4), device, ts).tolist() == [2, 0, 1, 3]


def test_no_rows_and_one_row() -> None:
    device, ts = np.array([4], dtype=np.int32), np.array([T0], dtype=np.int64)
    assert device_time_order(np.arange(0), device, ts).tolist() == []
    assert device_time_order(np.arange(1), device, ts).tolist() == [0]
