"""Registry.build's (subject, zone) pairs and jurisdiction paths, against the rule written as plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from emwatch.geo.zone_columns import ZoneColumns
from emwatch.geo.zones import Zone
from emwatch.registry import JurisdictionRow, Registry, SubjectRow
from emwatch.rules.permits import PERMIT_DESTINATION


def spec_ancestors(subjects: list[SubjectRow], jurisdictions: list[JurisdictionRow]) -> list[list[int]]:
    """Each active subject's jurisdiction path, own first, stopping at an unknown id; 8 deep, -1 padded."""
    jur_index = {j.id: i for i, j in enumerate(jurisdictions)}
    parent = {j.id: j.parent_id for j in jurisdictions}
    out = []
    for s in subjects:
        path, node = [], s.jurisdiction_id
        while len(path) < 8 and node is not None and node in jur_index:
            path.append(jur_index[node])
            node = parent.get(node)
        out.append(path + [-1] * (8 - len(path)))
    return out


def spec_pairs(subjects: list[SubjectRow], jurisdictions: list[JurisdictionRow], zones: list[Zone]) -> list[list[int]]:
    """Zones always checked per active subject: its own, then its groups' (in its group order), then the
    inclusion zones of each jurisdiction on its path (own first); zone order within each; no permit
    destinations."""
    active = [s for s in subjects if s.status == "active"]
    jur_index = {j.id: i for i, j in enumerate(jurisdictions)}
    paths = spec_ancestors(active, jurisdictions)
    out = []
    for s, path in zip(active, paths, strict=True):
        usable = [(i, z) for i, z in enumerate(zones) if z.properties.get("role") != PERMIT_DESTINATION]
        own = [i for i, z in usable if z.subject_id == s.id]
        grouped = [i for g in s.groups for i, z in usable if z.subject_id is None and z.group_id == g]
        by_path = [i for j in path if j >= 0 for i, z in usable
                   if z.subject_id is None and z.group_id is None and z.kind == "inclusion"
                   and jur_index.get(z.jurisdiction_id or "", -1) == j]
        out.append(own + grouped + by_path)
    return out


def random_scene(seed: int) -> tuple[list[JurisdictionRow], list[SubjectRow], list[Zone]]:
    rng = np.random.default_rng(seed)
    jurisdictions = [JurisdictionRow("j0", None)]
    for k in range(1, 12):  # a tree, plus one whose parent is unknown
        parent = f"j{rng.integers(0, k)}" if k != 11 else "gone"
        jurisdictions.append(JurisdictionRow(f"j{k}", parent))
    jur_ids = [j.id for j in jurisdictions] + ["nowhere"]
    groups = ["g0", "g1", "g2", "g3"]
    subjects = [
        SubjectRow(f"s{k}", str(rng.choice(jur_ids)), "medium",
                   tuple(str(g) for g in rng.choice(groups, size=rng.integers(0, 4))),  # repeats allowed
                   "active" if rng.uniform() < 0.85 else "suspended")
        for k in range(60)
    ]
    zones = []
    for k in range(400):
        scope_kind = rng.integers(0, 3)
        scope = ({"subject_id": f"s{rng.integers(0, 65)}"} if scope_kind == 0 else  # some unknown subjects
                 {"group_id": str(rng.choice([*groups, "g9"]))} if scope_kind == 1 else
                 {"jurisdiction_id": str(rng.choice(jur_ids[:-1]))})
        props = {"role": PERMIT_DESTINATION} if rng.uniform() < 0.1 else {}
        kind = "inclusion" if rng.uniform() < 0.5 else "exclusion"
        geom = shapely.box(120 + k * 0.01, 30.0, 120.005 + k * 0.01, 30.005)
        zones.append(Zone(f"z{k:03d}", kind, geom, properties=props, **scope))  # type: ignore[arg-type]
    return jurisdictions, subjects, zones


@pytest.mark.parametrize("seed", range(5))
def test_pairs_and_paths_follow_the_rule(seed: int) -> None:
    jurisdictions, subjects, zones = random_scene(seed)
    active = [s for s in subjects if s.status == "active"]
    for given in (zones, ZoneColumns.from_zones(zones)):
        reg = Registry.build(jurisdictions, subjects, [], given, 9)
        got = [reg.pair_zone[a:b].tolist() for a, b in zip(reg.pair_start[:-1], reg.pair_start[1:], strict=True)]
        assert got == spec_pairs(subjects, jurisdictions, zones)
        assert reg.subject_ancestors.tolist() == spec_ancestors(active, jurisdictions)
        assert reg.pair_zone.dtype == np.int32 and reg.pair_start.dtype == np.int64
