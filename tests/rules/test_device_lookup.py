"""DeviceLookup answers exactly as the registry's dict: known ids, unknown ids, odd ids, odd batches; the
engine names the unknown ones."""

from __future__ import annotations

import numpy as np
import pytest

from emwatch.ingest.batcher import BatchBuilder
from emwatch.ingest.decode import Decoded
from emwatch.ingest.protocol import DeviceEvent, Fix
from emwatch.kernel_threads import SERIAL, KernelThreads
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.device_lookup import MAX_KEY_BYTES, DeviceLookup
from tests.rules.harness import COUNTY, T0, World


def _dict_answer(index: dict[str, int], ids: list[str]) -> list[int]:
    return [index.get(d, -1) for d in ids]


def _lookup(device_ids: list[str]) -> tuple[DeviceLookup, dict[str, int]]:
    index = {d: i for i, d in enumerate(device_ids)}  # as Registry.build makes it: a repeat keeps the last
    return DeviceLookup.build(device_ids, index), index


@pytest.mark.parametrize("threads", [SERIAL, KernelThreads(2, min_rows=1)], ids=["serial", "2 threads"])
@pytest.mark.parametrize("seed", range(3))
def test_a_batch_resolves_as_the_dict_does(seed: int, threads: KernelThreads) -> None:
    rng = np.random.default_rng(seed)
    device_ids = [f"dev-{i:07d}" for i in range(5000)] + ["imei:356938035643809", "a", "x.y_z-1", "дев-1"]
    lookup, index = _lookup(device_ids)
    assert lookup.table is not None
    known = [device_ids[i] for i in rng.integers(0, len(device_ids), 1500)]
    unknown = ["dev-9999999", "dev-000000", "dev-00000001", "", "b", "дев-2", "imei:356938035643808"]
    ids = known + unknown + known[:50]  # repeats within a batch too
    order = rng.permutation(len(ids))
    ids = [ids[i] for i in order]
    got = lookup.resolve(ids, threads)
    assert got.dtype == np.int32
    assert got.tolist() == _dict_answer(index, ids)
    assert (got == -1).sum() == len(unknown)


def test_a_repeated_registry_id_keeps_its_last_device_like_the_dict() -> None:
    lookup, index = _lookup(["a", "b", "a", "c"])
    assert lookup.resolve(["a", "b", "c", "d"]).tolist() == [2, 1, 3, -1] == _dict_answer(index, ["a", "b", "c", "d"])


def test_an_id_holding_a_nul_byte_is_answered_by_the_dict() -> None:
    lookup, _ = _lookup(["a", "b"])
    ids = ["a", "a\0b", "b"]  # the table splits the batch on NUL: this batch takes the dict path
    assert lookup.resolve(ids).tolist() == [0, -1, 1]
    assert lookup.resolve(ids, KernelThreads(2, min_rows=1)).tolist() == [0, -1, 1]
    registry_nul, _ = _lookup(["a\0", "b"])
    assert registry_nul.table is None
    assert registry_nul.resolve(["a\0", "b", "a"]).tolist() == [0, 1, -1]


def test_ids_longer_than_the_table_takes_stay_on_the_dict() -> None:
    long_id = "d" * (MAX_KEY_BYTES + 1)
    lookup, _ = _lookup(["a", long_id])
    assert lookup.table is None
    assert lookup.resolve([long_id, "a", "zz"]).tolist() == [1, 0, -1]
    short, _ = _lookup(["a"])
    assert short.resolve([long_id, "a"]).tolist() == [-1, 0]  # longer than any key: unknown, not an error


def test_empty_batches_and_registries() -> None:
    lookup, _ = _lookup([])
    assert lookup.resolve(["a"]).tolist() == [-1]
    assert lookup.resolve([]).tolist() == []
    some, _ = _lookup(["a"])
    assert some.resolve([]).tolist() == []


def test_the_engine_names_the_devices_its_registry_does_not_know_until_a_reload_brings_them() -> None:
    world = World()
    builder = BatchBuilder()
    for device in ("ankle-1", "ankle-9", "phone-1", "ankle-9", "phone-7"):
        builder.add(Decoded(fixes=[(device, Fix(ts=T0, lat=30.02, lon=120.02))]))
    builder.add(Decoded(events=[("strap-3", DeviceEvent(ts=T0, type="strap_cut"), b"{}")]))
    batch = builder.build()
    assert world.engine.unknown_devices(batch) == {"ankle-9", "phone-7", "strap-3"}
    dead = world.engine.evaluate(batch, world.book.open_pairs()).dead
    assert sorted(d.topic for d in dead if d.reason == "unknown device") == [
        "em/v1/devices/ankle-9/fix", "em/v1/devices/ankle-9/fix", "em/v1/devices/phone-7/fix",
        "em/v1/devices/strap-3/event",
    ]
    known = Registry.build(
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")], [SubjectRow("s1", "j1", "high")],
        [DeviceRow(d, "ankle", "s1") for d in ("ankle-1", "phone-1", "ankle-9", "phone-7", "strap-3")],
        [COUNTY], h3_resolution=9,
    )
    world.engine.replace_registry(known)
    assert world.engine.unknown_devices(batch) == set()  # the same batch, resolved by the new registry
    evaluation = world.engine.evaluate(batch, world.book.open_pairs())
    assert [d.reason for d in evaluation.dead] == []
