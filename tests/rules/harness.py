"""A small supervised world for rule tests: one subject, a bracelet, a phone, a county, a school, a victim."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import shapely

from emwatch.alerts.episodes import Debounce, EpisodeBook, EpisodeKey
from emwatch.geo.zones import Zone
from emwatch.ingest.batcher import BatchBuilder
from emwatch.ingest.decode import Decoded
from emwatch.ingest.protocol import DeviceEvent, Fix
from emwatch.model import AlertEvent
from emwatch.registry import ContactBanRow, DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.engine import RuleConfig, RuleEngine
from emwatch.rules.permits import PermitRow

COUNTY = Zone("county", "inclusion", shapely.box(120.0, 30.0, 120.2, 30.2), jurisdiction_id="j1")
SCHOOL = Zone("school", "exclusion", shapely.box(120.10, 30.10, 120.11, 30.11), jurisdiction_id="j1")
VICTIM = Zone("victim", "exclusion", shapely.Point(120.05, 30.05), radius_m=200, subject_id="s1")
POSITIONS = {
    "in": (120.02, 30.02), "in2": (120.021, 30.021), "out": (120.5, 30.5), "school": (120.105, 30.105),
    "victim": (120.05, 30.0505),
    "in_victim_ring": (120.05, 30.0540),  # ~445 m north of the victim: outside 200 m, inside 200 + 300 m
    "edge_out": (120.2003, 30.1), "near_school": (120.0997, 30.105), "far": (121.5, 30.1),
}
# Due north of "in" by so many metres (a degree of latitude is 111,195 m on the authalic sphere).
POSITIONS.update({f"in_n{m}": (120.02, 30.02 + m / 111_195) for m in (50, 300, 700, 1500, 5000)})
T0 = 1_000_000_000  # 1970-01-12 21:46:40 in Asia/Shanghai: curfew (22:00) starts at T0 + 800 s


HOME = Zone(  # must be at home 22:00-06:00 local (Asia/Shanghai); "in2" is home, "in" is 150 m away
    "home", "inclusion", shapely.box(120.0205, 30.0205, 120.0215, 30.0215), subject_id="s1",
    schedule={"windows": [{"start": "22:00", "end": "06:00"}]},
)


def registry(
    zones: list[Zone] | None = None, permits: list[PermitRow] | None = None,
    bans: list[ContactBanRow] | None = None,
) -> Registry:
    """With `bans` (even empty): also subject s2 (bracelet ankle-2) and victim-1, who is protected from s1."""
    pairs = bans is not None
    return Registry.build(
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")],
        [SubjectRow("s1", "j1", "high")] + ([SubjectRow("s2", "j1", "medium")] if pairs else []),
        [DeviceRow("ankle-1", "ankle", "s1"), DeviceRow("phone-1", "phone", "s1")]
        + ([DeviceRow("ankle-2", "ankle", "s2"), DeviceRow("victim-1", "victim", None, "s1")] if pairs else []),
        zones if zones is not None else [COUNTY, SCHOOL, VICTIM],
        h3_resolution=9,
        permits=permits or [],
        bans=bans or [],
    )


@functools.cache
def _default_registry() -> Registry:
    """Built once: a registry is an immutable snapshot, and building one takes a while (zone index)."""
    return registry()


@dataclass
class World:
    """Rule engine + episode book driven by fixes, events and clock ticks; collects alert events."""

    policies: dict[str, Debounce] = field(default_factory=dict)
    open_keys: list[EpisodeKey] = field(default_factory=list)
    # Zone tests teleport between far-apart places; only the movement tests use a real speed limit.
    config: RuleConfig = field(default_factory=lambda: RuleConfig(max_speed_kmh=1e12))
    events: list[AlertEvent] = field(default_factory=list)
    zones: list[Zone] | None = None
    permits: list[PermitRow] | None = None
    bans: list[ContactBanRow] | None = None  # not None: a second subject and a victim device too
    prebuilt: Registry | None = None  # used as is (zones, permits and bans ignored): property tests

    def __post_init__(self) -> None:
        default = self.zones is None and self.permits is None and self.bans is None
        if self.prebuilt is not None:
            reg = self.prebuilt
        else:
            reg = _default_registry() if default else registry(self.zones, self.permits, self.bans)
        self.engine = RuleEngine(reg, self.config)
        self.book = EpisodeBook(reg, self.open_keys, self.policies)

    def send(self, *messages: tuple[int, str] | tuple[int, str, dict[str, object]],
             device: str = "ankle-1") -> list[AlertEvent]:
        """One batch of fixes `(seconds, position)` or `(seconds, position, {acc/src...})`, or events
        `(seconds, "event:<type>")`."""
        return self.send_mixed([
            (device, message[0], message[1], message[2] if len(message) > 2 else {})  # type: ignore[misc]
            for message in messages
        ])

    def send_mixed(self, messages: list[tuple[str, int, str, dict[str, object]]]) -> list[AlertEvent]:
        """One batch of `(device, seconds, position or "event:<type>", fix extras)` from several devices."""
        builder = BatchBuilder()
        for device, seconds, what, extra in messages:
            ts = T0 + int(seconds * 1000)
            if what.startswith("event:"):
                builder.add(Decoded(events=[(device, DeviceEvent(ts=ts, type=what[6:]), b"{}")]))  # type: ignore[arg-type]
            else:
                lon, lat = POSITIONS[what]
                builder.add(Decoded(fixes=[(device, Fix(ts=ts, lat=lat, lon=lon, **extra))]))  # type: ignore[arg-type]
        evaluation = self.engine.evaluate(builder.build(), self.book.open_pairs())
        new = self.book.update(evaluation.observations)
        new += self.book.late_episodes(evaluation.late_observations)
        self.events += new
        return new

    def tick(self, seconds: float) -> list[AlertEvent]:
        new = self.book.update(self.engine.tick(T0 + int(seconds * 1000)))
        self.events += new
        return new

    def summary(self) -> list[tuple[str, str, str, float]]:
        """(type, rule, zone, seconds) of every alert event so far."""
        return [(e.type, e.rule, e.zone_id or "", (e.ts - T0) / 1000) for e in self.events]
