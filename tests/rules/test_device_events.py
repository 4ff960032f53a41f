"""Device events: tamper and battery alerts with their paired clears."""

from __future__ import annotations

import pytest

from tests.rules.harness import World


@pytest.mark.parametrize(("events", "expected"), [
    (["strap_open"], [("alert", "strap_tamper", "critical")]),
    (["strap_open", "strap_open", "strap_closed"], [("alert", "strap_tamper", "critical"), ("cleared", "strap_tamper", "critical")]),
    (["case_open"], [("alert", "case_tamper", "critical")]),
    (["battery_low", "charging"], [("alert", "battery_low", "warning"), ("cleared", "battery_low", "warning")]),
    (["heartbeat", "companion_ok", "strap_closed"], []),
])
def test_device_events(events: list[str], expected: list[tuple[str, str, str]]) -> None:
    world = World()
    for i, event in enumerate(events):
        world.send((i, f"event:{event}"))
    assert [(e.type, e.rule, e.severity) for e in world.events] == expected


def test_tamper_alert_names_the_device() -> None:
    world = World()
    world.send((0, "event:strap_open"))
    assert (world.events[0].device_id, world.events[0].zone_id, world.events[0].lat) == ("ankle-1", None, None)
