"""Accuracy-aware containment: a fix is a circle; possible vs confirmed, and LBS never confirms."""

from __future__ import annotations

import pytest

from tests.rules.harness import World


@pytest.mark.parametrize(("position", "fix", "expected"), [
    ("edge_out", {"acc": 10.0}, [("alert", "zone_exit", "confirmed")]),           # ~29 m out, circle wholly out
    ("edge_out", {"acc": 100.0}, [("alert", "zone_exit", "possible")]),           # circle still reaches inside
    ("edge_out", {"acc": 10.0, "src": "lbs"}, [("alert", "zone_exit", "possible")]),  # a cell tower never confirms
    ("far", {"src": "lbs"}, [("alert", "zone_exit", "possible")]),
    ("near_school", {"acc": 10.0}, []),                                            # ~29 m from the school: clear
    ("near_school", {"acc": 100.0}, [("alert", "zone_entry", "possible")]),        # circle touches the school
    ("school", {"acc": 5.0}, [("alert", "zone_entry", "confirmed")]),
    ("school", {"acc": 5.0, "src": "lbs"}, [("alert", "zone_entry", "possible")]),
    ("victim", {"acc": 5.0}, [("alert", "zone_entry", "confirmed")]),
])
def test_confidence_of_a_single_fix(position: str, fix: dict[str, object], expected: list[tuple[str, str, str]]) -> None:
    world = World()
    world.send((0, position, fix))
    assert [(e.type, e.rule, e.confidence) for e in world.events] == expected


def test_a_possible_alert_is_upgraded_in_place_not_duplicated() -> None:
    world = World()
    world.send((0, "near_school", {"acc": 100.0}))
    world.send((10, "near_school", {"acc": 100.0}))
    world.send((20, "school", {"acc": 5.0}))
    world.send((30, "school", {"acc": 5.0}))
    assert [(e.type, e.confidence, e.zone_id) for e in world.events] == [
        ("alert", "possible", "school"), ("confirmed", "confirmed", "school"),
    ]


def test_possible_exit_clears_when_back_inside() -> None:
    world = World()
    world.send((0, "edge_out", {"acc": 100.0}))
    world.send((10, "in", {"acc": 5.0}))
    assert [(e.type, e.confidence) for e in world.events] == [("alert", "possible"), ("cleared", "possible")]
