"""Trace files (JSON Lines, optionally gzipped) and their ground truth; see device_sim/README.md.

Line 1 is a header object (`"trace": "emwatch-sim"`); every further line is one MQTT message:
`{"t": <publish offset ms from t0>, "topic": "...", "payload": <the JSON payload>}` in publish order.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from device_sim.kinds import KIND_NAMES, NEAR_MISS_KINDS, ROUTINE
from device_sim.noise import NoiseParams
from device_sim.orders import permit_rows
from device_sim.protocol import encode_report
from device_sim.simulator import Simulator
from device_sim.world import World, build_world

TRACE_FORMAT = "emwatch-sim"
VERSION = 1
# 2024-06-03 18:00 Asia/Shanghai: an evening, so a 6 h scenario covers the curfew's start at 22:00.
DEFAULT_START_MS = 1_717_408_800_000


@dataclass(frozen=True, slots=True)
class WorldSpec:
    """The arguments that rebuild a trace's world (for setting it up through the API before replay)."""

    subjects: int
    seed: int
    breach_fraction: float
    near_miss_fraction: float
    namespace: str

    def build(self) -> World:
        return build_world(
            self.subjects, self.seed, self.breach_fraction,
            near_miss_fraction=self.near_miss_fraction, namespace=self.namespace,
        )  # fmt: skip


def world_digest(world: World) -> str:
    """A fingerprint of what setup creates, to catch a trace replayed against a changed generator."""
    s = world.subjects
    curfew = [s.ids[i] for i in range(len(s)) if s.curfew[i]]
    parts = [s.ids, s.jurisdiction_ids, s.groups, world.devices.ids, world.own_zones, world.victims.ids]
    parts.append(curfew)
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def open_text(path: Path, mode: str) -> IO[str]:
    """Open for text, through gzip when the name ends in .gz."""
    if path.suffix != ".gz":
        return path.open(mode, encoding="utf-8")
    if mode == "r":
        return io.TextIOWrapper(gzip.GzipFile(path, "rb"), encoding="utf-8")
    return io.TextIOWrapper(_ReproducibleGzip(path), encoding="utf-8")


class _ReproducibleGzip(gzip.GzipFile):
    """No name and mtime 0 in the header: the same trace gives the same bytes (no spurious diffs)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        super().__init__(filename="", mode="wb", fileobj=self._file, mtime=0)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._file.close()


def record(
    spec: WorldSpec,
    trace_path: Path,
    truth_path: Path,
    *,
    duration_s: float,
    start_ms: int = DEFAULT_START_MS,
    noise: str = "clean",
    batch: int = 1,
    step_ms: int = 1_000,
) -> dict[str, int]:
    """Simulate `duration_s` from `start_ms` and write every message plus the ground truth."""
    world = spec.build()
    sim = Simulator(world, start_ms, noise=NoiseParams.named(noise), horizon_s=duration_s)
    end_ms = start_ms + int(duration_s * 1000)
    header = {
        "trace": TRACE_FORMAT, "version": VERSION, "t0": start_ms, "t1": end_ms, "noise": noise,
        "batch": batch, "world": _spec_dict(spec),
        "world_digest": world_digest(world),
    }  # fmt: skip
    counts = {"messages": 0, "fixes": 0, "events": 0}
    with open_text(trace_path, "w") as out:
        out.write(json.dumps(header, ensure_ascii=False) + "\n")
        for t_ms in range(start_ms + step_ms, end_ms + 1, step_ms):
            report = sim.step(t_ms)
            prefix = f'{{"t":{t_ms - start_ms},"topic":"'
            for topic, payload in [*encode_report(report, world, batch), *sim.victim_messages]:
                out.write(prefix + topic + '","payload":' + payload.decode() + "}\n")
                counts["messages"] += 1
            counts["fixes"] += len(report.fixes)
            counts["events"] += len(report.events)
    truth = truth_document(sim, header)
    truth_path.write_text(json.dumps(truth, ensure_ascii=False, indent=1) + "\n", "utf-8")
    return counts


def _spec_dict(spec: WorldSpec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in WorldSpec.__slots__}


def truth_document(sim: Simulator, header: dict[str, Any]) -> dict[str, Any]:
    """The ground-truth file: episodes, near-miss subjects and the setup a scorer needs to know."""
    world, plan = sim.world, sim.plan
    s = world.subjects
    scripted = [
        {"subject": s.ids[i], "kind": KIND_NAMES[int(plan.kind[i])],
         "near_miss": int(plan.kind[i]) in NEAR_MISS_KINDS, "start": int(plan.start_ms[i])}
        for i in range(len(s)) if plan.kind[i] != ROUTINE
    ]  # fmt: skip
    permits = permit_rows(world, plan)
    return {
        "truth": TRACE_FORMAT, "version": VERSION, "t0": header["t0"], "t1": header["t1"],
        "world": header["world"], "world_digest": header["world_digest"],
        "subjects": len(s), "devices": len(world.devices),
        "curfew_subjects": [s.ids[i] for i in range(len(s)) if s.curfew[i]],
        "contact_pairs": [
            [s.ids[i], s.ids[int(plan.partner[i])]] for i in range(len(s)) if plan.partner[i] > i
        ],
        "permits": permits, "scripted": scripted, "episodes": sim.ground_truth(),
    }  # fmt: skip


def read_header(path: Path) -> dict[str, Any]:
    with open_text(path, "r") as f:
        header = json.loads(f.readline())
    if header.get("trace") != TRACE_FORMAT:
        raise ValueError(f"{path} is not an {TRACE_FORMAT} trace (no header line)")
    return dict(header)


def read_messages(path: Path) -> Iterator[tuple[int, str, Any]]:
    """(publish offset ms, topic, payload object) of every message, in file order."""
    with open_text(path, "r") as f:
        f.readline()
        for line in f:
            m = orjson.loads(line)
            yield m["t"], m["topic"], m["payload"]


def shift_truth(truth: dict[str, Any], shift_ms: int) -> dict[str, Any]:
    """The same ground truth with every time moved by `shift_ms` (to match a rebased replay)."""
    out = dict(truth, t0=truth["t0"] + shift_ms, t1=truth["t1"] + shift_ms, shift_ms=shift_ms)
    for key in ("episodes", "permits", "scripted"):
        out[key] = [
            {k: v + shift_ms if k in ("start", "end") else v for k, v in row.items()} for row in truth[key]
        ]
    return out


def parse_start(text: str) -> int:
    """An ISO 8601 time with zone (e.g. 2024-06-03T18:00:00+08:00) as epoch ms."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("the start time needs a zone, e.g. +08:00")
    return int(when.timestamp() * 1000)
