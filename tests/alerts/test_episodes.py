"""Alert episodes from fixes: one alert per breach, a paired clear, nothing in between (no servers)."""

from __future__ import annotations

import pytest
import shapely

from emwatch.alerts.episodes import EpisodeBook, EpisodeKey
from emwatch.geo.zones import Zone
from emwatch.ingest.batcher import BatchBuilder
from emwatch.ingest.decode import Decoded
from emwatch.ingest.protocol import Fix
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.engine import RuleEngine

COUNTY = Zone("county", "inclusion", shapely.box(120.0, 30.0, 120.2, 30.2), jurisdiction_id="j1")
SCHOOL = Zone("school", "exclusion", shapely.box(120.10, 30.10, 120.11, 30.11), jurisdiction_id="j1")
VICTIM = Zone("victim", "exclusion", shapely.Point(120.05, 30.05), radius_m=200, subject_id="s1")
POSITIONS = {"in": (120.02, 30.02), "out": (120.5, 30.5), "school": (120.105, 30.105), "victim": (120.05, 30.0505)}


def registry() -> Registry:
    return Registry.build(
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")],
        [SubjectRow("s1", "j1", "high")],
        [DeviceRow("ankle-1", "ankle", "s1"), DeviceRow("phone-1", "phone", "s1")],
        [COUNTY, SCHOOL, VICTIM],
        h3_resolution=9,
    )


def run(positions: list[str], device: str = "ankle-1", batch_size: int = 1,
        open_keys: list[EpisodeKey] | None = None) -> list[tuple[str, str, str, int]]:
    """Feed fixes 1 s apart, `batch_size` per batch; returns (type, rule, zone, fix index) events."""
    reg = registry()
    engine, book = RuleEngine(reg, 9), EpisodeBook(reg, open_keys or [])
    out = []
    for start in range(0, len(positions), batch_size):
        builder = BatchBuilder()
        for i, name in enumerate(positions[start:start + batch_size], start=start):
            lon, lat = POSITIONS[name]
            builder.add(Decoded(fixes=[(device, Fix(ts=1_000_000 + i * 1000, lat=lat, lon=lon))]))
        evaluation = engine.evaluate(builder.build(), book.open_pairs())
        for ev in book.update(evaluation.batch, evaluation.observations):
            out.append((ev.type, ev.rule, ev.zone_id or "", (ev.ts - 1_000_000) // 1000))
    return out


@pytest.mark.parametrize("batch_size", [1, 3, 10])
@pytest.mark.parametrize(("positions", "expected"), [
    (["in", "in", "in"], []),
    (["in", "out", "out", "out", "in"], [("alert", "zone_exit", "county", 1), ("cleared", "zone_exit", "county", 4)]),
    (["out"] * 10, [("alert", "zone_exit", "county", 0)]),
    (["in", "school", "school", "in"], [("alert", "zone_entry", "school", 1), ("cleared", "zone_entry", "school", 3)]),
    (["victim", "in"], [("alert", "zone_entry", "victim", 0), ("cleared", "zone_entry", "victim", 1)]),
    (["out", "in", "out"], [("alert", "zone_exit", "county", 0), ("cleared", "zone_exit", "county", 1),
                            ("alert", "zone_exit", "county", 2)]),
])
def test_episodes(positions: list[str], expected: list[tuple[str, str, str, int]], batch_size: int) -> None:
    assert run(positions, batch_size=batch_size) == expected


def test_shared_school_clears_when_the_fix_is_far_from_it() -> None:
    # "out" is nowhere near the school's H3 cover, so only the open episode brings the pair back.
    assert sorted(run(["school", "out"])) == sorted([
        ("alert", "zone_entry", "school", 0), ("cleared", "zone_entry", "school", 1), ("alert", "zone_exit", "county", 1),
    ])


def test_an_episode_open_before_a_restart_is_not_opened_again() -> None:
    assert run(["out", "out", "in"], open_keys=[EpisodeKey("s1", "zone_exit", "county")]) == [
        ("cleared", "zone_exit", "county", 2),
    ]


def test_a_phone_does_not_trigger_zone_rules() -> None:
    assert run(["out", "school"], device="phone-1") == []


def test_an_older_fix_arriving_late_does_not_flip_the_current_state() -> None:
    reg = registry()
    engine, book = RuleEngine(reg, 9), EpisodeBook(reg)
    events = []
    for ts, name in [(2000, "out"), (1000, "in")]:
        builder = BatchBuilder()
        lon, lat = POSITIONS[name]
        builder.add(Decoded(fixes=[("ankle-1", Fix(ts=ts, lat=lat, lon=lon))]))
        evaluation = engine.evaluate(builder.build(), book.open_pairs())
        events += [e.type for e in book.update(evaluation.batch, evaluation.observations)]
    assert events == ["alert"]
