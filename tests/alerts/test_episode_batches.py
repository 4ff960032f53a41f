"""EpisodeBook.update over long random batches equals the debounce machine run key by key, in order.

The book skips the checks that cannot change anything with whole-batch array lookups; the reference
here runs every check through `transition`, each key's checks in event-time order within its batch
(the documented arrival semantics), so any check the fast path wrongly skips or misorders shows up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import shapely

from emwatch.alerts.episodes import Debounce, EpisodeBook, EpisodeKey
from emwatch.alerts.severity import severity_of
from emwatch.alerts.timeline import IMMEDIATE, State, transition
from emwatch.geo.zones import Zone
from emwatch.model import Observations
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.catalog import RULE_CODE, RULES, ZONE_RULES

SUBJECTS = 6
ZONE_IDS = ["z0", "z1", "z2", "z3"]
# Zone rules (with a zone) and device rules (without), each with its own debounce.
CHECKED = [RULE_CODE[r] for r in ("zone_exit", "zone_entry", "zone_approach", "strap_tamper", "signal_lost")]
POLICIES = {
    "zone_exit": Debounce(open_checks=2, open_ms=60_000, clear_checks=3, clear_ms=120_000),
    "zone_entry": Debounce(open_checks=3, clear_checks=2),
    "zone_approach": Debounce(open_checks=1, clear_checks=1),
    "signal_lost": Debounce(open_checks=2, open_ms=30_000, clear_checks=1),
}
Event = tuple[str, str, str, str, str, int, str, str, str, float | None, object]


def make_registry(without_subject: int | None = None) -> Registry:
    zones = [
        Zone(z, "exclusion", shapely.box(120 + i * 0.01, 30, 120.005 + i * 0.01, 30.005), jurisdiction_id="j1")
        for i, z in enumerate(ZONE_IDS)
    ]
    return Registry.build(
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")],
        [SubjectRow(f"s{i}", "j1", ("high", "medium", "low")[i % 3]) for i in range(SUBJECTS) if i != without_subject],
        [DeviceRow(f"d{i}", "ankle", f"s{i}") for i in range(SUBJECTS)],
        zones, h3_resolution=7,
    )


@dataclass
class Reference:
    """Every check through `transition`, key by key; no skipping, no code views."""

    state: dict[EpisodeKey, State] = field(default_factory=dict)

    def update(self, registry: Registry, obs: Observations) -> list[Event]:
        def key(i: int) -> EpisodeKey:
            zone = int(obs.zone[i])
            return EpisodeKey(registry.subject_ids[int(obs.subject[i])], RULES[int(obs.rule[i])],
                              ZONE_IDS[zone] if zone >= 0 else "")

        # Keys in (subject, rule, zone) index order, each key's checks by event time, ties by arrival.
        order = sorted(range(len(obs)), key=lambda i: (
            int(obs.subject[i]), int(obs.rule[i]), int(obs.zone[i]), int(obs.ts[i]), i))
        events: list[Event] = []
        for i in order:
            k = key(i)
            before = self.state.get(k, (None, 0, 0))
            after, kind = transition(POLICIES.get(k.rule, IMMEDIATE), before, int(obs.ts[i]),
                                     bool(obs.breach[i]), bool(obs.confirmed[i]))
            self.state[k] = after
            if kind is not None:
                subject = int(obs.subject[i])
                confidence = (before[0] if kind == "cleared" else after[0]) or "confirmed"
                lat = float(obs.lat[i])
                events.append((
                    kind, k.rule, k.subject_id, k.zone_id, registry.device_ids[int(obs.device[i])],
                    int(obs.ts[i]), confidence, registry.subject_jurisdiction[subject],
                    severity_of(k.rule, registry.subject_risk[subject]), None if lat != lat else lat,
                    (obs.detail or {}).get(i),
                ))
        events.sort(key=lambda e: e[5])
        return events

    def open_keys(self) -> set[EpisodeKey]:
        return {k for k, s in self.state.items() if s[0] is not None}


def random_checks(rng: np.random.Generator, registry: Registry, n: int, now: int) -> Observations:
    subject = rng.integers(0, len(registry.subject_ids), n).astype(np.int32)
    rule = rng.choice(np.array(CHECKED, dtype=np.int16), n)
    zone = np.where(np.isin(rule, list(ZONE_RULES)), rng.integers(0, len(ZONE_IDS), n), -1).astype(np.int32)
    device = np.array([registry.device_index[f"d{registry.subject_ids[s][1:]}"] for s in subject], dtype=np.int32)
    ts = (now - rng.integers(0, 40_000, n)).astype(np.int64)  # out of order within and across batches
    lat = np.where(rng.random(n) < 0.1, np.nan, 30 + rng.random(n))
    breach = rng.random(n) < rng.choice([0.05, 0.3, 0.7])
    detail = {int(i): {"score": int(i)} for i in np.flatnonzero(rng.random(n) < 0.05)} or None
    return Observations(subject, rule, zone, device, ts, lat, 120 + rng.random(n), breach,
                        rng.random(n) < 0.7, detail=detail)


def event_tuple(e: object) -> Event:
    return (e.type, e.rule, e.subject_id, e.zone_id or "", e.device_id, e.ts, e.confidence,  # type: ignore[attr-defined]
            e.jurisdiction_id, e.severity, e.lat, e.data)  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(6))
def test_update_equals_the_machine_run_check_by_check(seed: int) -> None:
    rng = np.random.default_rng(seed)
    registry = make_registry()
    already_open = [EpisodeKey("s1", "zone_exit", "z2"), EpisodeKey("s4", "strap_tamper", "")]
    book = EpisodeBook(registry, already_open, POLICIES)
    reference = Reference({k: ("confirmed", 0, 0) for k in already_open})
    now, raised = 1_000_000_000, 0
    for _ in range(300):
        now += int(rng.integers(0, 30_000))
        obs = random_checks(rng, registry, int(rng.choice([0, 1, 5, 40, 300])), now)
        got = [event_tuple(e) for e in book.update(obs)]
        assert got == reference.update(registry, obs)
        assert book.open_keys == reference.open_keys()
        raised += len(got)
    subject, zone = book.open_pairs()
    assert np.all(np.diff(subject) >= 0)  # sorted by subject, as containment needs
    watched = set(zip(subject.tolist(), zone.tolist(), strict=True))
    for k in reference.open_keys():
        if RULE_CODE[k.rule] in ZONE_RULES:
            assert (registry.subject_ids.index(k.subject_id), ZONE_IDS.index(k.zone_id)) in watched
    assert raised > 100  # the stream did exercise opening, clearing and confirming


def test_an_open_episode_survives_a_reload_without_its_subject_and_resumes_after() -> None:
    registry = make_registry()
    book = EpisodeBook(registry, [], POLICIES)
    checks = Observations(
        np.array([2], np.int32), np.array([RULE_CODE["zone_approach"]], np.int16), np.array([1], np.int32),
        np.array([2], np.int32), np.array([1_000], np.int64), np.array([30.0]), np.array([120.0]),
        np.array([True]), np.array([True]),
    )
    assert [e.type for e in book.update(checks)] == ["alert"]
    book.rebind(make_registry(without_subject=2))
    assert EpisodeKey("s2", "zone_approach", "z1") in book.open_keys
    assert len(book.open_pairs()[0]) == 0  # nothing to check for a subject no longer monitored
    book.rebind(registry)
    compliant = Observations(
        checks.subject, checks.rule, checks.zone, checks.device, np.array([2_000], np.int64), checks.lat,
        checks.lon, np.array([False]), np.array([True]),
    )
    assert [(e.type, e.subject_id, e.zone_id) for e in book.update(compliant)] == [("cleared", "s2", "z1")]
    assert book.open_keys == frozenset()
