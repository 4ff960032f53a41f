"""Trace files: deterministic recording, the documented line format, and replay's time rebase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_sim.replay import rebase_shift_ms
from device_sim.trace import WorldSpec, read_header, read_messages, record, shift_truth, world_digest

SPEC = WorldSpec(subjects=12, seed=9, breach_fraction=0.5, near_miss_fraction=0.25, namespace="t-")


def test_the_same_spec_records_the_same_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        record(SPEC, tmp_path / f"{name}.jsonl.gz", tmp_path / f"{name}.json", duration_s=1800)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_trace_lines_are_header_then_offset_topic_payload_in_publish_order(tmp_path: Path) -> None:
    counts = record(SPEC, tmp_path / "t.jsonl", tmp_path / "truth.json", duration_s=1800)
    header = read_header(tmp_path / "t.jsonl")
    assert header["world"] == {f: getattr(SPEC, f) for f in WorldSpec.__slots__}
    assert header["world_digest"] == world_digest(SPEC.build())
    messages = list(read_messages(tmp_path / "t.jsonl"))
    assert len(messages) == counts["messages"] > 0
    offsets = [t for t, _, _ in messages]
    assert offsets == sorted(offsets) and 0 < offsets[0] and offsets[-1] <= 1_800_000
    for _, topic, payload in messages:
        assert topic.startswith("em/v1/devices/t-dev-") and topic.endswith(("/fix", "/event"))
        assert isinstance(payload["ts"], int)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["devices"] == len(SPEC.build().devices) and truth["t1"] - truth["t0"] == 1_800_000


@pytest.mark.parametrize("speed", [0.0, 1.0, 50.0])
def test_replay_rebase_never_sends_a_fix_from_the_future(speed: float) -> None:
    t0, t1, wall0 = 1_000_000, 1_000_000 + 6 * 3_600_000, 5_000_000_017
    shift = rebase_shift_ms(t0, t1, speed, wall0)
    assert shift % 60_000 == 0  # whole minutes: a curfew's HH:MM window moves with the trace exactly
    for offset in range(0, t1 - t0 + 1, 600_000):
        sent = wall0 + (offset / speed if speed else 0)
        ts = t0 + offset + shift
        assert ts <= sent + 1 and sent - ts <= t1 - t0 + 60_000


def test_shifted_truth_moves_every_time() -> None:
    truth = {"t0": 10, "t1": 20, "episodes": [{"start": 11, "end": 12, "rule": "x"}], "permits": [], "scripted": []}
    assert shift_truth(truth, 5)["episodes"] == [{"start": 16, "end": 17, "rule": "x"}]
