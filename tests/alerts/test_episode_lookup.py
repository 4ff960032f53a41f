"""The book looks up only checks of subjects holding some key, and patches its zone pairs per batch:
with many idle subjects it must still equal the machine run check by check, and its per-subject
counts and zone pairs must match those derived from the whole code table."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from emwatch.alerts.episode_state import ZONE_PAIR
from emwatch.alerts.episodes import EpisodeBook
from emwatch.geo.zones import Zone
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow
from tests.alerts.test_episode_batches import POLICIES, ZONE_IDS, Reference, event_tuple, random_checks

SUBJECTS = 60


def wide_registry() -> Registry:
    zones = [
        Zone(z, "exclusion", shapely.box(120 + i * 0.01, 30, 120.005 + i * 0.01, 30.005), jurisdiction_id="j1")
        for i, z in enumerate(ZONE_IDS)
    ]
    return Registry.build(
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")],
        [SubjectRow(f"s{i}", "j1", "high") for i in range(SUBJECTS)],
        [DeviceRow(f"d{i}", "ankle", f"s{i}") for i in range(SUBJECTS)],
        zones, h3_resolution=7,
    )


@pytest.mark.parametrize("seed", range(4))
def test_checks_of_idle_subjects_change_nothing_the_machine_would_not(seed: int) -> None:
    rng = np.random.default_rng(seed)
    registry = wide_registry()
    book = EpisodeBook(registry, [], POLICIES)
    reference = Reference()
    now, raised = 1_000_000_000, 0
    for _ in range(300):
        now += int(rng.integers(0, 30_000))
        obs = random_checks(rng, registry, int(rng.choice([0, 3, 20, 200])), now)
        got = [event_tuple(e) for e in book.update(obs)]
        assert got == reference.update(registry, obs)
        raised += len(got)
        table_subjects = book.codes.subject_zone(book._table.codes)[0]
        assert np.array_equal(book._held, np.bincount(table_subjects, minlength=SUBJECTS))
        # the zone pairs containment checks, patched per batch, equal those derived from the whole table
        subject, zone = book.open_pairs()
        table = book._table
        want_subject, want_zone = book.codes.subject_zone(table.codes[table.flags >= ZONE_PAIR])
        assert np.array_equal(subject, want_subject) and np.array_equal(zone, want_zone)
    assert book.open_keys == reference.open_keys()
    assert raised > 100
