"""The same stream of fixes, events and clock ticks gives the same alert episodes however it is cut
into micro-batches: the pipeline's batch boundaries depend on arrival timing, never on the data.

Each stream is in event-time order (no late fixes: those have their own property in test_late_fixes.py)
and is run twice, one message per batch (the reference) and cut at random boundaries, with the
production debounce and speed limit.
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from emwatch.alerts.episodes import Debounce
from emwatch.registry import ContactBanRow, Registry
from emwatch.rules.engine import RuleConfig
from tests.rules.harness import COUNTY, HOME, SCHOOL, VICTIM, World, registry

ZONE = Debounce(open_checks=2, open_ms=60_000, clear_checks=3, clear_ms=120_000)
POLICIES = {  # as pipeline.debounce_policies builds them from the default settings
    "zone_exit": ZONE, "zone_entry": ZONE, "curfew_violation": ZONE, "zone_approach": ZONE,
    "device_separation": Debounce(open_checks=2, clear_checks=2),
    "victim_proximity": Debounce(clear_checks=2), "subject_contact": Debounce(clear_checks=2),
}  # fmt: skip
BAN = ContactBanRow("s1", "s2", radius_m=200.0, min_seconds=120.0)
DEVICES = ("ankle-1", "ankle-1", "ankle-1", "phone-1", "phone-1", "victim-1", "ankle-2")
PLACES = ("in", "in2", "in_n50", "in_n300", "in_n700", "in_n1500", "in_victim_ring", "victim", "school",
          "near_school", "out")  # fmt: skip
EXTRAS: tuple[dict[str, object], ...] = (
    {}, {"acc": 5.0}, {"acc": 120.0}, {"src": "lbs"}, {"src": "wifi", "acc": 40.0},
)
EVENTS = ("event:companion_lost", "event:companion_ok", "event:heartbeat")
Message = tuple[str, int, str, dict[str, object]]
Step = tuple[str, Any]  # ("msg", Message) or ("tick", seconds)


@st.composite
def streams(draw: st.DrawFn, devices: tuple[str, ...] = DEVICES) -> list[Step]:
    """Messages 1-40 s apart from 10 minutes before the curfew window opens, with clock ticks among them."""
    steps: list[Step] = []
    t = 500  # the curfew window opens at 800
    for _ in range(draw(st.integers(5, 45))):
        t += draw(st.integers(1, 40))
        if draw(st.integers(0, 9)) == 0:
            steps.append(("tick", t))
            continue
        device = draw(st.sampled_from(devices))
        if device != "victim-1" and draw(st.integers(0, 9)) == 0:
            steps.append(("msg", (device, t, draw(st.sampled_from(EVENTS)), {})))
        else:
            place, extra = draw(st.sampled_from(PLACES)), draw(st.sampled_from(EXTRAS))
            steps.append(("msg", (device, t, place, extra)))
    return steps


@functools.cache
def world_registry() -> Registry:
    return registry([COUNTY, SCHOOL, VICTIM, HOME], bans=[BAN])


def run(steps: list[Step], cuts: set[int]) -> list[tuple[str, str, str, str, str, int]]:
    """The alert events of `steps` fed in batches that end before each index in `cuts` and at ticks."""
    world = World(policies=POLICIES, config=RuleConfig(), prebuilt=world_registry())
    batch: list[Message] = []
    for i, (kind, item) in enumerate(steps):
        if batch and (i in cuts or kind == "tick"):
            world.send_mixed(batch)
            batch = []
        if kind == "tick":
            world.tick(item)
        else:
            batch.append(item)
    if batch:
        world.send_mixed(batch)
    return sorted(
        (e.type, e.rule, e.subject_id, e.zone_id or "", e.confidence, e.ts) for e in world.events
    )


def same_alerts_however_batched(steps: list[Step], data: st.DataObject) -> None:
    one_by_one = run(steps, set(range(len(steps))))
    cuts = data.draw(st.sets(st.integers(0, max(len(steps) - 1, 0))), label="cuts")
    assert run(steps, cuts) == one_by_one, [s for s in steps if s[0] == "msg"]


@settings(max_examples=100, deadline=None)
@given(steps=streams(devices=("ankle-1",)), data=st.data())
def test_bracelet_rules_do_not_depend_on_batch_boundaries(steps: list[Step], data: st.DataObject) -> None:
    """location_anomaly, zone_exit/entry/approach and curfew_violation (fixes and the clock)."""
    same_alerts_however_batched(steps, data)


@settings(max_examples=150, deadline=None)
@given(steps=streams(), data=st.data())
def test_pair_rules_do_not_depend_on_batch_boundaries(steps: list[Step], data: st.DataObject) -> None:
    """With a phone, a victim's device and a banned contact too: separation, proximity, contact."""
    same_alerts_however_batched(steps, data)


@settings(max_examples=150, deadline=None)
@given(steps=streams(devices=("ankle-1", "ankle-1", "victim-1", "ankle-2")), data=st.data())
def test_proximity_rules_do_not_depend_on_batch_boundaries(steps: list[Step], data: st.DataObject) -> None:
    """A victim's device and a banned contact: victim_proximity and subject_contact."""
    same_alerts_however_batched(steps, data)
