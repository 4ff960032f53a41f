"""Property: a packed batch and the JSON batch of the same fixes decode to the same fixes and rejections."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emwatch.ingest import packed
from emwatch.ingest.decode import DeadLetter, MessageDecoder
from tests.ingest.test_packed import NOW, TOPIC, assert_same, built

CI = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
decoder = MessageDecoder()
SOURCES = ("gps", "wifi", "lbs", "sat")  # "sat" is code 3: invalid in both encodings



def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid about nine times in ten, so that a batch mixes good rows with the odd bad one."""
    return st.integers(0, 9).flatmap(lambda k: invalid if k == 9 else valid)


device_ids = mostly(st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
                    st.sampled_from(["", "dev 1", "dev/1", "dév", "x" * 129, "a#b", "\x00"]))
times = mostly(st.integers(NOW - 7 * 86_400_000, NOW + 300_000),
               st.one_of(st.integers(NOW - 8 * 86_400_000, NOW + 400_000), st.integers(-(2**63) + 1, 2**63 - 1)))
anything = st.floats(allow_nan=True, allow_infinity=True)
# JSON cannot carry an infinite accuracy (it would become null = absent), so it is left to test_packed.
accuracies = mostly(st.one_of(st.none(), st.floats(0, 1e7, width=32)),
                    st.floats(width=32, allow_infinity=False, allow_nan=False))
fixes = st.fixed_dictionaries({
    "dev": device_ids, "ts": times, "lat": mostly(st.floats(-90, 90), anything),
    "lon": mostly(st.floats(-180, 180), anything), "acc": accuracies,
    "src": mostly(st.integers(0, 2), st.just(3)),
    "batt": mostly(st.one_of(st.none(), st.integers(0, 100)), st.integers(101, 254)),
    "seq": mostly(st.one_of(st.none(), st.integers(0, 2**63 - 1)), st.integers(-(2**63) + 1, -1)),
})


def as_packed(rows: list[dict[str, Any]]) -> bytes:
    return packed.encode_batch(
        [r["dev"] for r in rows], [r["ts"] for r in rows], [r["lat"] for r in rows], [r["lon"] for r in rows],
        acc=[np.nan if r["acc"] is None else r["acc"] for r in rows], src=[r["src"] for r in rows],
        batt=[packed.NO_BATT_BYTE if r["batt"] is None else r["batt"] for r in rows],
        seq=[-(2**63) if r["seq"] is None else r["seq"] for r in rows])


def as_json(rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps([{**r, "src": SOURCES[r["src"]]} for r in rows])


def verdicts(dead: list[DeadLetter]) -> list[str]:
    """What each dead letter says, without the decoder's own wording: the row index or the time phrase."""
    out = []
    for d in dead:
        found = re.search(r"index \d+|in the future|older than", d.reason)
        out.append(found.group(0) if found else d.reason)
    return out


@CI
@given(st.lists(fixes, max_size=12))
def test_packed_and_json_batches_agree(rows: list[dict[str, Any]]) -> None:
    binary = decoder.decode(TOPIC, as_packed(rows), NOW)
    json = decoder.decode(TOPIC, as_json(rows), NOW)
    assert verdicts(binary.dead) == verdicts(json.dead)
    assert binary.fix_count == len(json.fixes)
    assert binary.fix_count + len(binary.dead) == len(rows)  # nothing lost
    if json.fixes:
        assert_same(built(binary), built(json))


@CI
@given(st.lists(fixes, max_size=6), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       st.integers(0, 10_000))
def test_damaged_packed_batch_never_raises_and_loses_no_row(
    rows: list[dict[str, Any]], flips: list[tuple[int, int]], cut: int
) -> None:
    payload = bytearray(as_packed(rows))
    for at, value in flips:
        payload[at % len(payload)] = value
    damaged = bytes(payload[: max(cut, 4)])  # a flip in the magic makes it (invalid) JSON: rejected too
    out = decoder.decode(TOPIC, damaged, NOW)
    rejected = [d for d in out.dead if "invalid gateway batch" in d.reason]
    if rejected:
        assert out.fix_count == 0 and out.dead == rejected == [out.dead[0]] and out.dead[0].payload == damaged
    else:
        count = packed.HEADER.unpack_from(damaged)[4]
        assert out.fix_count + len(out.dead) == count
        assert all(re.search(r"invalid fix at index \d+|in the future|older than", d.reason) for d in out.dead)
