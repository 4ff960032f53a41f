"""Severity: defaults by risk level, overridden per jurisdiction (the nearest override on the path wins)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from emwatch.alerts.severity import SeverityOverrideRow, resolve_overrides, severity_of
from emwatch.registry import JurisdictionRow, Registry, SubjectRow
from tests.rules.harness import COUNTY, World

TREE = {"city": None, "d1": "city", "o1": "d1", "o2": "d1", "d2": "city"}


def row(jurisdiction: str, severity: str, rule: str = "zone_exit", risk: str = "low") -> SeverityOverrideRow:
    return SeverityOverrideRow(jurisdiction, rule, risk, severity)


@pytest.mark.parametrize(("overrides", "jurisdiction", "expected"), [
    ([], "o1", "serious"),                                            # the default for a low-risk exit
    ([row("city", "critical")], "o1", "critical"),                    # inherited from the top
    ([row("city", "critical"), row("d1", "warning")], "o1", "warning"),  # the nearest wins
    ([row("city", "critical"), row("d1", "warning")], "d2", "critical"),  # a sibling's does not apply
    ([row("o2", "warning")], "o1", "serious"),
    ([row("o1", "warning", risk="high")], "o1", "serious"),           # another risk level: untouched
    ([row("o1", "warning", rule="zone_entry")], "o1", "serious"),     # another rule: untouched
])
def test_overrides_apply_down_the_tree(
    overrides: list[SeverityOverrideRow], jurisdiction: str, expected: str
) -> None:
    resolved = resolve_overrides(TREE, overrides)
    assert severity_of("zone_exit", "low", resolved.get(jurisdiction)) == expected


def test_no_overrides_resolve_to_nothing_and_a_cycle_does_not_hang() -> None:
    assert resolve_overrides(TREE, []) == {}
    assert resolve_overrides({"a": "b", "b": "a"}, [row("a", "warning")])["b"] == {("zone_exit", "low"): "warning"}


def test_the_registry_resolves_stored_overrides_per_jurisdiction() -> None:
    registry = Registry.build(
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")], [SubjectRow("s1", "j1", "high")], [], [COUNTY],
        h3_resolution=9, severity=[row("j0", "warning", risk="high")],
    )
    assert registry.severity_overrides == {"j0": {("zone_exit", "high"): "warning"},
                                           "j1": {("zone_exit", "high"): "warning"}}


def test_alerts_carry_the_jurisdictions_severity() -> None:
    world = World()  # subject s1, high risk, in j1 (below j0): a zone_exit is critical by default
    world.send((0, "out"), (1, "in"))
    registry = replace(world.book.registry, severity_overrides=resolve_overrides(
        {"j0": None, "j1": "j0"}, [row("j0", "serious", risk="high")]))
    world.engine.replace_registry(registry)
    world.book.rebind(registry)
    world.send((2, "out"))
    assert [(e.type, e.severity) for e in world.events] == [
        ("alert", "critical"), ("cleared", "critical"), ("alert", "serious"),
    ]
