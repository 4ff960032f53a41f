"""Late and buffered fixes: inside the reorder horizon a late fix is replayed with its device's recent
fixes in event-time order, and the episodes are reconciled to what in-order processing would have
given, without ever flipping the current state back; beyond the horizon it is judged alone.

"Same set of episodes" compares (rule, zone, confidence reached, event-time start, event-time end)
of every episode in the book's ledger (`EpisodeBook.episodes()`), plus the keys open now.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emwatch.alerts.episodes import Debounce
from emwatch.rules.engine import RuleConfig
from tests.rules.harness import T0, World

ZONE = Debounce(open_checks=2, open_ms=60_000, clear_checks=3, clear_ms=120_000)  # production defaults
Ledger = list[tuple[str, str, str, float, float | None, bool]]


def ledger(w: World) -> Ledger:
    """(rule, zone, confidence, start s, end s, kept) of every episode in the book's ledger."""
    return sorted(
        (k.rule, k.zone_id, e.confidence, (e.start - T0) / 1000, None if e.end is None else (e.end - T0) / 1000, e.kept)
        for k, e in w.book.episodes()
    )


def events(w: World) -> list[tuple[str, str, bool, float]]:
    return [(e.type, e.rule, e.late, (e.ts - T0) / 1000) for e in w.events]


def test_a_buffered_burst_reveals_a_missed_exit_with_its_event_time_end() -> None:
    w = World()
    w.send((0, "in"))
    w.send((100, "in"))  # live: the device came back into coverage at home
    w.send((40, "out"), (50, "out"), (60, "in"))  # the buffer flushes: it had been out meanwhile
    # In time order the exit would have cleared at the first fix back inside (60), not the last out.
    assert events(w) == [("alert", "zone_exit", True, 40), ("cleared", "zone_exit", True, 60)]
    assert ledger(w) == [("zone_exit", "county", "confirmed", 40, 60, False)]
    assert w.book.open_keys == frozenset()  # the current state (home) is untouched


def test_a_late_breach_moves_the_open_episodes_start_back() -> None:
    w = World()
    w.send((0, "in"))
    w.send((100, "out"))
    w.send((50, "out"))  # it had already left at 50
    assert events(w) == [("alert", "zone_exit", False, 100)]  # the alert on record cannot move...
    assert ledger(w) == [("zone_exit", "county", "confirmed", 50, None, False)]  # ...the ledger does
    [(key, revision)] = w.book.take_revisions()
    assert (key.rule, revision.was_start, revision.start) == ("zone_exit", T0 + 100_000, T0 + 50_000)


def test_a_late_return_splits_the_open_episode_without_closing_it_now() -> None:
    w = World()
    w.send((0, "out"))
    w.send((100, "out"))
    w.send((50, "in"))  # back inside in between
    # The reopening is not `late`: that the subject is out now was known live.
    assert events(w) == [
        ("alert", "zone_exit", False, 0), ("cleared", "zone_exit", True, 50), ("alert", "zone_exit", False, 100),
    ]
    assert ledger(w) == [("zone_exit", "county", "confirmed", 0, 50, False),
                         ("zone_exit", "county", "confirmed", 100, None, False)]
    assert len(w.book.open_keys) == 1  # still outside now


def test_late_compliant_fixes_never_clear_the_live_episode() -> None:
    w = World()
    w.send((100, "out"))
    w.send((90, "in"))
    assert events(w) == [("alert", "zone_exit", False, 100)]
    assert len(w.book.open_keys) == 1


def test_a_redelivered_fix_adds_nothing() -> None:
    w = World()
    w.send((0, "in"), (10, "out"), (20, "in"))
    before = (events(w), ledger(w))
    w.send((10, "out"))  # QoS 1 redelivery of a fix already judged
    assert (events(w), ledger(w)) == before


def test_beyond_the_horizon_a_late_fix_is_judged_alone() -> None:
    w = World(config=RuleConfig(max_speed_kmh=1e12, reorder_horizon_s=60))
    w.send((0, "in"))
    w.send((300, "in"))
    w.send((100, "out"))  # 200 s behind the watermark: older than the 60 s horizon
    assert events(w) == [("alert", "zone_exit", True, 100), ("cleared", "zone_exit", True, 100)]


def test_after_a_restart_a_late_fix_older_than_the_restored_watermark_is_judged_alone() -> None:
    # What came before the restart is only in the database: a replay would miss the fix at 100 s and
    # end the exit at 110 s. Judged alone, the late fix gives a closed pair at its own time.
    w = World()
    w.engine.seed([("ankle-1", T0 + 100_000, 30.02, 120.02)])
    w.send((110, "in"))
    w.send((50, "out"))
    assert events(w) == [("alert", "zone_exit", True, 50), ("cleared", "zone_exit", True, 50)]


@pytest.mark.parametrize(("live", "late", "expected_events", "expected_ledger"), [
    # Debounced (2 fixes to open): a late fix completes the opening run: the violation is raised now,
    # late, at its event-time start.
    ([(0, "in"), (100, "out")], [(90, "out")], [("alert", "zone_exit", True, 100)],
     [("zone_exit", "county", "confirmed", 100, None, False)]),
    # A late breach just before the opening run moves the open episode's start back.
    ([(0, "in"), (100, "out"), (110, "out")], [(90, "out")], [("alert", "zone_exit", False, 110)],
     [("zone_exit", "county", "confirmed", 100, None, False)]),
    # A late fix inside the opening run would, in time order, have prevented the alert: a raised alert
    # is never retracted and the current state never flips back, so it is kept (the one exception).
    ([(0, "out"), (10, "out")], [(5, "in")], [("alert", "zone_exit", False, 10)],
     [("zone_exit", "county", "confirmed", 10, None, True)]),
    # Jitter inside a buffered burst stays jitter: no alert at all.
    ([(0, "in"), (200, "in")], [(40, "out"), (50, "in"), (60, "out"), (70, "in")], [], []),
])
def test_late_bursts_with_debounce(
    live: list[tuple[int, str]], late: list[tuple[int, str]], expected_events: list[tuple[str, str, bool, float]],
    expected_ledger: Ledger,
) -> None:
    w = World(policies={"zone_exit": ZONE})
    for fix in live:
        w.send(fix)
    w.send(*late)
    assert events(w) == expected_events
    assert ledger(w) == expected_ledger


def _run(fixes: list[tuple[int, str]], batch: int, policies: dict[str, Debounce]) -> World:
    w = World(policies=dict(policies))
    for start in range(0, len(fixes), batch):
        w.send(*fixes[start:start + batch])
    return w


PLACES = st.sampled_from(["in", "out", "school", "in"])  # "school" is a shared exclusion zone in the county


@settings(max_examples=150, deadline=None)
@given(st.lists(PLACES, min_size=1, max_size=14), st.randoms(use_true_random=False), st.integers(1, 4))
def test_shuffled_arrival_gives_the_same_episodes_as_time_order(
    places: list[str], rnd: random.Random, batch: int
) -> None:
    """The strict property, for rules that act on the first check (the harness default)."""
    fixes = [(i * 10, p) for i, p in enumerate(places)]
    arrival = fixes[:]
    rnd.shuffle(arrival)
    in_order, shuffled = _run(fixes, 1, {}), _run(arrival, batch, {})
    assert ledger(shuffled) == ledger(in_order)
    assert shuffled.book.open_keys == in_order.book.open_keys
    # Live episodes alternate open/clear; nothing is ever cleared twice or opened twice.
    for key in {(e.rule, e.zone_id) for e in shuffled.events}:
        kinds = [e.type for e in shuffled.events if (e.rule, e.zone_id) == key and e.type != "confirmed"]
        assert all(a != b for a, b in itertools.pairwise(kinds)), kinds


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["in", "out"]), min_size=1, max_size=14), st.randoms(use_true_random=False),
       st.integers(1, 4))
def test_shuffled_arrival_with_debounce(outside: list[str], rnd: random.Random, batch: int) -> None:
    """With debounce the property is strict unless an alert had to be kept (never retracted); and no
    violation in-order processing finds is ever missed."""
    fixes = [(i * 10, p) for i, p in enumerate(outside)]
    arrival = fixes[:]
    rnd.shuffle(arrival)
    policies = {"zone_exit": ZONE}
    in_order, shuffled = _run(fixes, 1, policies), _run(arrival, batch, policies)
    expected, got = ledger(in_order), ledger(shuffled)
    if not any(e[-1] for e in got):
        assert got == expected
        assert shuffled.book.open_keys == in_order.book.open_keys
    for rule, zone, _, start, end, _ in expected:
        assert any(
            (r, z) == (rule, zone) and s <= (end if end is not None else 1e18) and start <= (e if e is not None else 1e18)
            for r, z, _, s, e, _ in got
        ), (expected, got)


def test_the_history_survives_a_registry_reload() -> None:
    w = World()
    w.send((0, "in"))
    w.send((100, "in"))
    registry = replace(w.engine.registry)  # e.g. a NOTIFY after a zone edit: device numbers carried by id
    w.engine.replace_registry(registry)
    w.book.rebind(registry)
    w.send((40, "out"), (50, "out"), (60, "in"))
    assert events(w) == [("alert", "zone_exit", True, 40), ("cleared", "zone_exit", True, 60)]


@pytest.mark.parametrize(("arrival", "expected"), [
    # A kept episode (10-) whose close at 40 a later replay starts after: it ends at 40, and the
    # exit from 60 on is its own episode, as in time order.
    ([(20, "in"), (70, "out"), (0, "out"), (40, "in"), (10, "out"), (30, "in"), (60, "out"), (50, "out")],
     [("zone_exit", "county", "confirmed", 10.0, 40.0, False), ("zone_exit", "county", "confirmed", 60.0, None, False)]),
    # An alert raised at 20 that time order would raise at 30 stays marked kept through a later replay.
    ([(0, "out"), (20, "out"), (10, "in"), (40, "in"), (30, "out")],
     [("zone_exit", "county", "confirmed", 20.0, None, True)]),
])  # fmt: skip
def test_kept_episodes_through_later_replays(arrival: list[tuple[int, str]], expected: Ledger) -> None:
    assert ledger(_run(arrival, 1, {"zone_exit": ZONE})) == expected
