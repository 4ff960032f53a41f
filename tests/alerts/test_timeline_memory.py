"""The episode book's late-fix history stays bounded in a long run, and pruning it changes no outcome.

A key's timeline (alerts/timeline.py) is what a late fix inside the reorder horizon is re-derived
from. Once the key is closed and nothing changed within the horizon, no late fix can reach back to
what it holds, so it goes: memory follows the keys active within the horizon, not every key seen.
"""

from __future__ import annotations

import random

import numpy as np
import shapely

from emwatch.alerts.episodes import Debounce, EpisodeBook
from emwatch.geo.zones import Zone
from emwatch.model import Observations
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.catalog import RULE_CODE
from emwatch.rules.engine import RuleConfig
from tests.rules.harness import T0, World

HORIZON_MS = 60_000
SUBJECTS, ZONES, PER_WINDOW = 200, 3, 5
ZONE_EXIT = Debounce(open_checks=2, open_ms=60_000, clear_checks=3, clear_ms=120_000)
POLICIES = {"zone_exit": ZONE_EXIT}


def many_subjects() -> Registry:
    zones = [
        Zone(f"z{i}", "exclusion", shapely.box(120 + i * 0.01, 30, 120.005 + i * 0.01, 30.005), jurisdiction_id="j1")
        for i in range(ZONES)
    ]
    return Registry.build(
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")],
        [SubjectRow(f"s{i}", "j1", "high") for i in range(SUBJECTS)],
        [DeviceRow(f"d{i}", "ankle", f"s{i}") for i in range(SUBJECTS)],
        zones, h3_resolution=7,
    )


def window_checks(registry: Registry, subjects: range, step: int, ts: int) -> Observations:
    """Every zone key of `subjects` checked at `ts`: out for steps 1-4 of a window, in otherwise."""
    subject = np.repeat(np.array(subjects, dtype=np.int32), ZONES)
    n = len(subject)
    zone = np.tile(np.arange(ZONES, dtype=np.int32), len(subjects))
    device = np.array([registry.device_index[f"d{s}"] for s in subject.tolist()], dtype=np.int32)
    return Observations(
        subject, np.full(n, RULE_CODE["zone_exit"], np.int16), zone, device, np.full(n, ts, np.int64),
        np.full(n, 30.0), np.full(n, 120.0), np.full(n, 1 <= step <= 4), np.ones(n, bool),
    )


def test_a_long_stream_over_many_keys_keeps_the_timelines_bounded() -> None:
    # Subjects take turns, PER_WINDOW at a time for 12 checks 10 s apart: each key opens and clears
    # once, then stays quiet for the rest of the run (a shift of subjects coming and going).
    registry = many_subjects()
    book = EpisodeBook(registry, (), POLICIES, horizon_ms=HORIZON_MS)
    per_window_keys = PER_WINDOW * ZONES
    most, raised, ts = 0, 0, T0
    for first in range(0, SUBJECTS, PER_WINDOW):
        for step in range(12):
            ts += 10_000
            raised += len(book.update(window_checks(registry, range(first, first + PER_WINDOW), step, ts)))
            most = max(most, book.timelines)
    assert raised == 2 * SUBJECTS * ZONES  # every key opened and cleared once
    # A closed key's timeline goes one horizon (60 s) after its close: at most this and the last window.
    assert most <= 2 * per_window_keys
    assert book.timelines <= per_window_keys
    assert len(book.episodes()) <= 2 * per_window_keys


class Unpruned(EpisodeBook):
    """The book without dropping whole timelines: every key keeps its history forever."""

    def _forget_timelines(self) -> None:
        pass


def stream(seed: int) -> list[list[tuple[int, str]]]:
    """Batches of (seconds, place) 10 s apart over 30 horizons; runs of up to 9 fixes held back and
    delivered after 1-6 later ones (late, mostly inside the horizon), long quiet stays at home between."""
    rnd = random.Random(seed)
    places: list[str] = []
    while len(places) < 180:
        if rnd.random() < 0.3:
            places += ["in"] * rnd.randint(8, 20)  # home longer than the horizon: keys close and go quiet
        else:
            places += rnd.choices(["in", "out", "school", "in2"], k=rnd.randint(2, 8))
    fixes = [(i * 10, p) for i, p in enumerate(places)]
    batches: list[list[tuple[int, str]]] = []
    i = 0
    while i < len(fixes):
        if rnd.random() < 0.25:
            held, i = fixes[i:i + rnd.randint(1, 9)], i + len(fixes[i:i + 9])
            live = rnd.randint(1, 6)
            batches += [[f] for f in fixes[i:i + live]]
            i += live
            batches.append(held)
        else:
            batches.append([fixes[i]])
            i += 1
    return batches


def test_pruning_changes_no_event_and_no_recent_episode() -> None:
    dropped_some = False
    for seed in range(8):
        pruned, kept = (World(policies=dict(POLICIES), config=RuleConfig(max_speed_kmh=1e12, reorder_horizon_s=60))
                        for _ in range(2))
        reg = pruned.engine.registry
        pruned.book = EpisodeBook(reg, (), POLICIES, horizon_ms=HORIZON_MS)
        kept.book = Unpruned(reg, (), POLICIES, horizon_ms=HORIZON_MS)
        newest = 0
        for batch in stream(seed):
            assert pruned.send(*batch) == kept.send(*batch), seed
            assert pruned.book.open_keys == kept.book.open_keys
            dropped_some |= pruned.book.timelines < kept.book.timelines
            newest = max(newest, *(s for s, _ in batch))
        cutoff = T0 + newest * 1000 - HORIZON_MS

        def recent(book: EpisodeBook, cutoff: int = cutoff) -> list[tuple[str, str, int, int | None, bool]]:
            return sorted((k.rule, k.zone_id, e.start, e.end, e.kept) for k, e in book.episodes()
                          if e.end is None or e.end >= cutoff)

        assert recent(pruned.book) == recent(kept.book), seed
    assert dropped_some  # the streams did make the book drop timelines
