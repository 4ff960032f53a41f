"""Ground truth: violation episodes (subject, rule, start, end) read off the simulation's true state.

Truth is what really happened, not what was scripted: a scripted trip whose path clips a school
records that `zone_entry` too, and an episode is as long as the true condition held. Each step
`observe()` is given, per rule, the subjects it evaluated and which of them are in violation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_sim.world import BoolArray, IntArray

# The service's alert rule names (src/emwatch/rules/catalog.py and the rules being added).
RULES = (
    "zone_exit", "zone_entry", "curfew_violation", "permit_overdue", "signal_lost", "strap_tamper",
    "case_tamper", "battery_low", "device_separation", "victim_proximity", "subject_contact",
    "location_anomaly",
)  # fmt: skip
# Rules decided from positions: an episode shorter than two reporting intervals may fall between
# fixes, so no engine can be expected to see it; such episodes are marked `brief`.
POSITION_RULES = frozenset(
    {"zone_exit", "zone_entry", "curfew_violation", "permit_overdue", "device_separation",
     "victim_proximity", "subject_contact"}
)  # fmt: skip


@dataclass
class _Track:
    active: BoolArray
    start: IntArray
    other: IntArray | None = None


@dataclass
class TruthTracker:
    """Open episodes per (rule, zone) as arrays over subjects; closed ones as plain dicts."""

    n_subjects: int
    episodes: list[dict[str, Any]] = field(default_factory=list)
    _tracks: dict[tuple[str, str | None], _Track] = field(default_factory=dict)

    def observe(
        self,
        t_ms: int,
        rule: str,
        subjects: IntArray,
        active: BoolArray,
        zone_id: str | None = None,
        other: IntArray | None = None,
    ) -> None:
        """Of `subjects` (distinct), those `active` are in violation at t_ms; others are not."""
        track = self._tracks.get((rule, zone_id))
        if track is None:
            track = _Track(np.zeros(self.n_subjects, dtype=bool), np.zeros(self.n_subjects, dtype=np.int64))
            self._tracks[(rule, zone_id)] = track
        was = track.active[subjects]
        began, ended = subjects[active & ~was], subjects[~active & was]
        track.start[began] = t_ms
        if other is not None:
            if track.other is None:
                track.other = np.full(self.n_subjects, -1, dtype=np.int64)
            track.other[subjects] = other
        self._close(rule, zone_id, track, ended, t_ms, still_open=False)
        track.active[subjects] = active

    def finish(self, t_ms: int) -> None:
        """Close every open episode at the end of the run (marked `open`: it had not ended)."""
        for (rule, zone_id), track in self._tracks.items():
            self._close(rule, zone_id, track, np.flatnonzero(track.active), t_ms, still_open=True)
            track.active[:] = False

    def _close(
        self, rule: str, zone_id: str | None, track: _Track, subjects: IntArray, t_ms: int, still_open: bool
    ) -> None:
        for s in subjects.tolist():
            episode: dict[str, Any] = {"subject": s, "rule": rule, "start": int(track.start[s]), "end": t_ms}
            if zone_id is not None:
                episode["zone_id"] = zone_id
            if track.other is not None and track.other[s] >= 0:
                episode["other_subject"] = int(track.other[s])
            if still_open:
                episode["open"] = True
            self.episodes.append(episode)

    def resolved(self, subject_ids: list[str], interval_ms: IntArray) -> list[dict[str, Any]]:
        """Episodes with subject ids filled in and `brief` set, sorted by start."""
        out = []
        for e in sorted(self.episodes, key=lambda e: (e["start"], e["subject"], e["rule"])):
            e = dict(e)
            s = e["subject"]
            if e["rule"] in POSITION_RULES and e["end"] - e["start"] < 2 * int(interval_ms[s]):
                e["brief"] = True
            if e.get("zone_id") == VICTIM_ZONE:
                e["zone_id"] = f"zone-victim-{subject_ids[s]}"
            e["subject"] = subject_ids[s]
            if "other_subject" in e:
                e["other_subject"] = subject_ids[e["other_subject"]]
            out.append(e)
        return out


VICTIM_ZONE = "<victim>"  # placeholder zone id, resolved per subject to zone-victim-<subject>
