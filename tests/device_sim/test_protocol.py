"""Simulated payloads follow wire protocol v1 (docs/protocol.md) and survive a JSON round trip."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
import pytest
from conftest import NO_GAPS, START_MS

from device_sim.protocol import encode_messages, fix_objects
from device_sim.reporting import Fixes
from device_sim.simulator import Simulator
from device_sim.world import World

MAX_PAYLOAD_BYTES = 1_048_576
MAX_FUTURE_MS = 300_000
MAX_AGE_MS = 7 * 86_400_000
FIX_FIELDS = {"ts", "lat", "lon", "acc", "src", "batt", "seq"}


def assert_valid_fix(obj: Any, now_ms: int) -> None:
    """The protocol's validation rules for one fix object."""
    assert isinstance(obj, dict)
    assert {"ts", "lat", "lon"} <= obj.keys() <= FIX_FIELDS
    assert type(obj["ts"]) is int and now_ms - MAX_AGE_MS <= obj["ts"] <= now_ms + MAX_FUTURE_MS
    for key in ("lat", "lon", "acc"):
        assert type(obj[key]) in (int, float) and math.isfinite(obj[key])
    assert -90 <= obj["lat"] <= 90 and -180 <= obj["lon"] <= 180
    assert obj["acc"] >= 0
    assert obj["src"] in ("gps", "wifi", "lbs")
    assert type(obj["batt"]) is int and 0 <= obj["batt"] <= 100
    assert type(obj["seq"]) is int


@pytest.fixture(scope="module")
def fixes(world: World) -> Fixes:
    """A minute of fixes from every device at once (one step covering a whole low-risk interval)."""
    sim = Simulator(world, START_MS, noise=NO_GAPS)
    return sim.step(START_MS + 60_000).fixes


def test_every_device_reports_within_a_minute(world: World, fixes: Fixes) -> None:
    assert sorted(fixes.device_index.tolist()) == list(range(len(world.devices)))


def test_single_fix_messages_go_to_the_device_topic_and_validate(world: World, fixes: Fixes) -> None:
    messages = encode_messages(fixes, world)
    assert len(messages) == len(fixes)
    for (topic, payload), d in zip(messages, fixes.device_index.tolist(), strict=True):
        assert topic == f"em/v1/devices/{world.devices.ids[d]}/fix"
        assert re.fullmatch(r"em/v1/devices/dev-\d{6}/fix", topic)
        assert_valid_fix(orjson.loads(payload), START_MS + 60_000)


def test_payload_round_trips_exactly(fixes: Fixes, world: World) -> None:
    objects = fix_objects(fixes)
    decoded = [orjson.loads(payload) for _, payload in encode_messages(fixes, world)]
    assert decoded == objects
    assert abs(objects[0]["ts"] - (START_MS + 60_000)) <= 5_000  # device clocks are skewed by up to 5 s
    assert abs(objects[0]["lat"] - fixes.lat[0]) < 1e-6 and abs(objects[0]["lon"] - fixes.lon[0]) < 1e-6


@pytest.mark.parametrize("batch", [2, 7, 1_000])
def test_gateway_batches_carry_the_same_fixes_split_per_gateway(
    world: World, fixes: Fixes, batch: int
) -> None:
    singles = {
        (world.devices.ids[d], o["ts"]): o
        for d, o in zip(fixes.device_index, fix_objects(fixes), strict=True)
    }
    seen = {}
    for topic, payload in encode_messages(fixes, world, batch=batch):
        gateway = re.fullmatch(r"em/v1/gateways/(gw-[a-z]+)/batch", topic)
        assert gateway
        assert len(payload) < MAX_PAYLOAD_BYTES
        items = orjson.loads(payload)
        assert isinstance(items, list) and 1 <= len(items) <= batch
        for item in items:
            device = item.pop("dev")
            assert world.devices.gateway_ids[world.devices.ids.index(device)] == gateway.group(1)
            assert_valid_fix(item, START_MS + 60_000)
            seen[(device, item["ts"])] = item
    assert seen == singles
