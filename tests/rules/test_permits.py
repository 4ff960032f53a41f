"""Leave permits (外出请假): the destination replaces the county while on leave; late return is overdue."""

from __future__ import annotations

import pytest
import shapely

from emwatch.geo.zones import Zone
from emwatch.rules.permits import PermitRow
from tests.rules.harness import COUNTY, SCHOOL, T0, World

# A trip to "far" (121.5, 30.1), 130 km east of the county: allowed from +100 s to +1000 s, 300 s grace.
TRIP = Zone("trip", "inclusion", shapely.box(121.4, 30.0, 121.6, 30.2), subject_id="s1",
            properties={"role": "permit_destination"})
PERMIT = PermitRow(7, "s1", T0 + 100_000, T0 + 1_000_000, 300_000, ("trip",))


def world() -> World:
    return World(zones=[COUNTY, SCHOOL, TRIP], permits=[PERMIT])


@pytest.mark.parametrize(("fixes", "expected"), [
    # At the destination during the permit: nothing.
    ([(0, "in"), (200, "far"), (900, "far")], []),
    # Back in the county during the grace period: nothing.
    ([(200, "far"), (1100, "far"), (1250, "in")], []),
    # Still away after end + grace: permit_overdue (not zone_exit), cleared on return, then normal rules.
    ([(200, "far"), (1400, "far"), (1500, "in"), (1600, "out")],
     [("alert", "permit_overdue", "county", 1400), ("cleared", "permit_overdue", "county", 1500),
      ("alert", "zone_exit", "county", 1600)]),
    # On leave but not where the permit says: outside the destination is a zone_exit of the destination.
    ([(200, "out")], [("alert", "zone_exit", "trip", 200)]),
    # Before the permit starts, the county applies as always.
    ([(50, "far")], [("alert", "zone_exit", "county", 50)]),
    # A destination zone alone binds nobody outside the permit: no trip alerts when at home.
    ([(1500, "in"), (2000, "in")], []),
])
def test_permit(fixes: list[tuple[int, str]], expected: list[tuple[str, str, str, int]]) -> None:
    w = world()
    for fix in fixes:
        w.send(fix)
    assert w.summary() == expected


def test_exclusion_zones_stay_in_force_during_leave() -> None:
    w = world()
    w.send((200, "school"))  # also outside the trip's destination, so that fires too
    assert sorted((e.rule, e.zone_id) for e in w.events) == [("zone_entry", "school"), ("zone_exit", "trip")]
