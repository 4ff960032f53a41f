"""Late and buffered fixes: judged at their own time, raising missed violations as `late`, never
flipping the current state. The watermark is the newest fix time seen from the device."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rules.harness import World


def test_a_buffered_burst_reveals_a_missed_exit() -> None:
    w = World()
    w.send((0, "in"))
    w.send((100, "in"))  # live: the device came back into coverage at home
    w.send((40, "out"), (50, "out"), (60, "in"))  # the buffer flushes: it had been out meanwhile
    assert [(e.type, e.rule, e.late, (e.ts - 1_000_000_000) // 1000) for e in w.events] == [
        ("alert", "zone_exit", True, 40), ("cleared", "zone_exit", True, 50),
    ]
    assert w.book.open_keys == frozenset()  # the current state (home) is untouched


def test_late_fixes_during_an_open_episode_add_nothing() -> None:
    w = World()
    w.send((100, "out"))
    w.send((50, "out"), (60, "in"))
    assert [(e.type, e.late) for e in w.events] == [("alert", False)]
    assert len(w.book.open_keys) == 1


def test_late_compliant_fixes_do_not_clear_a_live_episode() -> None:
    w = World()
    w.send((100, "out"))
    w.send((90, "in"))
    assert [e.type for e in w.events] == ["alert"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.booleans(), min_size=1, max_size=12),
    st.randoms(use_true_random=False),
    st.integers(min_value=1, max_value=4),
)
def test_any_arrival_order_ends_in_the_same_state_and_misses_no_violation(
    outside: list[bool], rnd: random.Random, batch: int
) -> None:
    fixes = [(i * 10, "out" if o else "in") for i, o in enumerate(outside)]
    arrival = fixes[:]
    rnd.shuffle(arrival)
    w = World()
    for start in range(0, len(arrival), batch):
        w.send(*arrival[start:start + batch])

    # The current state is the state at the newest fix, whatever the order of arrival.
    assert (len(w.book.open_keys) == 1) == outside[-1]
    # Some alert (live or late) exists whenever the subject was ever outside.
    assert any(e.type == "alert" for e in w.events) == any(outside)
    # Live episodes alternate open/clear; late ones come as closed pairs, both tagged late.
    live = [e.type for e in w.events if not e.late]
    assert live == ["alert", "cleared"] * (len(live) // 2) + ["alert"] * (len(live) % 2)
    late = [e.type for e in w.events if e.late]
    assert late == ["alert", "cleared"] * (len(late) // 2)
