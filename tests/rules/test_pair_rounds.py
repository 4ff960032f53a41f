"""Two-device rules run round by round over a batch: as if its fixes and events had come one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from emwatch.pipeline import PAIR_RULE_DEBOUNCE
from emwatch.registry import ContactBanRow
from emwatch.rules.pair_rounds import device_groups, rounds
from tests.rules.harness import T0, World


@pytest.mark.parametrize(("group", "ts", "expected"), [
    ([], [], []),
    ([-1, -1, -1], [3, 1, 2], [0, 0, 0]),                  # in no pair rule: all in the first round
    ([0, 0, 0], [30, 10, 20], [2, 0, 1]),                  # one group: one round per timestamp, in time order
    ([0, 1, 0, 1, -1], [10, 10, 20, 5, 7], [0, 1, 1, 0, 0]),  # groups counted on their own
    ([4, 4, 4], [10, 10, 20], [0, 0, 1]),                  # the same instant is one round
])  # fmt: skip
def test_rounds(group: list[int], ts: list[int], expected: list[int]) -> None:
    got = rounds(np.array(group, dtype=np.int32), np.array(ts, dtype=np.int64))
    assert got.tolist() == expected


def test_a_subjects_bracelet_and_phone_form_one_group() -> None:
    w = World()
    groups = device_groups(w.engine.registry, w.engine.pairs)
    assert groups.tolist() == [0, 0]  # ankle-1, phone-1 of subject 0


def test_a_victims_device_and_banned_contacts_join_the_subjects_group() -> None:
    w = World(bans=[ContactBanRow("s1", "s2", radius_m=200.0, min_seconds=120.0)])
    r = w.engine.registry
    groups = dict(zip(r.device_ids, device_groups(r, w.engine.pairs).tolist(), strict=True))
    assert groups == {"ankle-1": 0, "phone-1": 0, "ankle-2": 0, "victim-1": 0}


def separation(batches: list[list[tuple[str, int, str]]]) -> list[tuple[str, float]]:
    w = World(policies=dict(PAIR_RULE_DEBOUNCE))
    for batch in batches:
        w.send_mixed([(device, seconds, what, {}) for device, seconds, what in batch])
    return [(e.type, (e.ts - T0) / 1000) for e in w.events if e.rule == "device_separation"]


# The phone 700 m away, then the BLE link reported lost a second later: two checks (2 open an alert),
# in one batch as in two.
APART = [("ankle-1", 0, "in"), ("phone-1", 1, "in"), ("ankle-1", 13, "in2"), ("phone-1", 25, "in_n700"),
         ("ankle-1", 26, "event:companion_lost")]  # fmt: skip


@pytest.mark.parametrize("cut", [[5], [3, 5], [3, 4, 5], [1, 2, 3, 4, 5]])
def test_separation_checks_each_report_in_any_batching(cut: list[int]) -> None:
    batches, start = [], 0
    for end in cut:
        batches.append(APART[start:end])
        start = end
    assert separation(batches) == [("alert", 26.0)]


@pytest.mark.parametrize("one_batch", [True, False])
def test_a_victim_alert_opens_at_the_fix_that_came_near(one_batch: bool) -> None:
    w = World(bans=[])  # with a victim's device (victim-1) who is protected from s1
    fixes: list[tuple[str, int, str, dict[str, object]]] = [("ankle-1", 14, "in", {}), ("victim-1", 15, "in", {}), ("ankle-1", 16, "in", {})]
    for batch in ([fixes] if one_batch else [[f] for f in fixes]):
        w.send_mixed(batch)
    assert [(e.type, e.rule, (e.ts - T0) / 1000) for e in w.events] == [("alert", "victim_proximity", 15.0)]
