"""The engine's fix cells come through each device's cell anchor (geo/cell_memo.py): h3's cells, with the
anchors carried by device id when the registry changes."""

from __future__ import annotations

import h3
import numpy as np

from emwatch.ingest.batcher import BatchBuilder
from emwatch.ingest.decode import Decoded
from emwatch.ingest.protocol import Fix
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow
from tests.rules.harness import COUNTY, T0, World


def _batch(fixes: list[tuple[str, int, float, float]]) -> BatchBuilder:
    builder = BatchBuilder()
    for device, ts, lat, lon in fixes:
        builder.add(Decoded(fixes=[(device, Fix(ts=ts, lat=lat, lon=lon))]))
    return builder


def test_batch_cells_are_h3s_as_a_device_walks() -> None:
    world = World()
    rng = np.random.default_rng(5)
    lat, lon = 30.02, 120.02
    for k in range(60):
        lat, lon = lat + rng.normal(0, 2e-4), lon + rng.normal(0, 2e-4)
        batch = _batch([("ankle-1", T0 + k * 10_000, lat, lon), ("phone-1", T0 + k * 10_000, lat + 0.01, lon)])
        ev = world.engine.evaluate(batch.build(), world.book.open_pairs())
        f = ev.batch.fixes
        want = [h3.str_to_int(h3.latlng_to_cell(a, o, 9)) for a, o in zip(f.lat, f.lon, strict=True)]
        assert ev.batch.cell.tolist() == want
    anchor = world.engine.state.cell_anchor[world.engine.registry.device_index["ankle-1"]]
    assert anchor["reach2"] != -1.0 and anchor["cell"] != 0  # the walk left an anchor behind


def test_anchors_follow_their_devices_through_a_registry_change() -> None:
    world = World()
    batch = _batch([("ankle-1", T0, 30.02, 120.02), ("phone-1", T0, 30.03, 120.03)]).build()
    world.engine.evaluate(batch, world.book.open_pairs())
    before = {d: world.engine.state.cell_anchor[i].copy() for d, i in world.engine.registry.device_index.items()}
    renumbered = Registry.build(  # a new device sorts first: the others move up one
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")], [SubjectRow("s1", "j1", "high")],
        [DeviceRow(d, "ankle", "s1") for d in ("a-new", "ankle-1", "phone-1")], [COUNTY], h3_resolution=9,
    )
    world.engine.replace_registry(renumbered)
    index, anchor = renumbered.device_index, world.engine.state.cell_anchor
    assert [index[d] for d in ("a-new", "ankle-1", "phone-1")] == [0, 1, 2]  # ankle-1 was 0, phone-1 1
    for device in ("ankle-1", "phone-1"):
        assert anchor[index[device]].tobytes() == before[device].tobytes()
    assert anchor[index["a-new"]]["reach2"] == -1.0  # a new device has no anchor yet
