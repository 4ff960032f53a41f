"""Event-time history of one episode key within the reorder horizon, and its re-derivation.

The debounce state machine (`transition`) is the only definition of when an episode opens, upgrades
and clears. Live, it runs check by check in arrival order; each key also keeps a short *trail* (the
state after every check that changed it) and its *episodes* (event-time start/end) for the last
`horizon_ms`. A late fix inside the horizon re-runs the machine from the state just before it over
every check since (`derive`), and `reconcile` turns the difference into the few events that move the
alert record to the event-time truth without flipping the current state back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

State = tuple[str | None, int, int]  # (open confidence or None, checks towards a change, since ts)
CLOSED: State = (None, 0, 0)
Kind = Literal["alert", "confirmed", "cleared"]


@dataclass(frozen=True, slots=True)
class Debounce:
    """How much evidence opens and clears an episode of one rule."""

    open_checks: int = 1
    open_ms: int = 0  # 0: by count only
    clear_checks: int = 1
    clear_ms: int = 0

    def due(self, count: int, since_ms: int, ts: int, *, opening: bool) -> bool:
        checks, window = (self.open_checks, self.open_ms) if opening else (self.clear_checks, self.clear_ms)
        return count >= checks or (window > 0 and ts - since_ms >= window)


IMMEDIATE = Debounce()


def transition(
    policy: Debounce, state: State, ts: int, breach: bool, confirmed: bool
) -> tuple[State, Kind | None]:
    """One check through the debounce machine: the next state and the event it causes, if any."""
    conf, count, since = state
    if conf is None and not breach:
        return CLOSED, None
    if conf is not None and breach:
        if confirmed and conf == "possible":
            return ("confirmed", 0, 0), "confirmed"
        return (conf, 0, 0), None
    since = ts if count == 0 else since
    if not policy.due(count + 1, since, ts, opening=conf is None):
        return (conf, count + 1, since), None
    if conf is None:
        return ("confirmed" if confirmed else "possible", 0, 0), "alert"
    return CLOSED, "cleared"


@dataclass(slots=True)
class Episode:
    """One episode in event time; `kept`: raised, no longer supported by the evidence, never retracted."""

    start: int
    end: int | None
    confidence: str
    kept: bool = False

    def overlaps(self, other: Episode) -> bool:
        inf = 1 << 62
        return self.start < (other.end if other.end is not None else inf) and other.start < (
            self.end if self.end is not None else inf
        )


@dataclass(slots=True)
class Timeline:
    """A key's recent history: the state before the trail, the trail, and its recent episodes."""

    base: State
    trail: list[tuple[int, State]] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)

    def state_before(self, ts: int) -> State:
        """The state after every check older than `ts`."""
        state = self.base
        for at, after in self.trail:
            if at >= ts:
                break
            state = after
        return state

    def end_kept_before(self, t0: int) -> list[Revision]:
        """End, where the trail closed, an episode kept open past a close that still stands before t0.

        A kept episode stays open while the newest check is a breach although the machine closed it;
        when a later replay starts after that close, the close is history: the episode ends there
        (no longer kept), and what follows is re-derived from the closed state.
        """
        closed_since, before = None, self.base
        for at, state in self.trail:
            if at >= t0:
                break
            if state[0] is None and before[0] is not None:
                closed_since = at
            elif state[0] is not None:
                closed_since = None
            before = state
        if closed_since is None:
            return []
        out = []
        for e in self.episodes:
            if e.end is None and e.kept and e.start <= closed_since:
                out.append(Revision(e.start, closed_since, e.confidence, e.start, None))
                e.end, e.kept = closed_since, False
        return out

    def record(self, ts: int, state: State, kind: Kind | None, horizon_ms: int) -> None:
        """Remember a live state change (and the episode change it made); forget what left the horizon."""
        self.trail.append((ts, state))
        if kind == "alert":
            self.episodes.append(Episode(ts, None, state[0] or "confirmed"))
        elif kind is not None and self.episodes and self.episodes[-1].end is None:
            if kind == "cleared":
                self.episodes[-1].end = ts
            else:
                self.episodes[-1].confidence = "confirmed"
        self.forget(ts - horizon_ms)

    def forget(self, cutoff: int) -> None:
        """Fold the changes older than `cutoff` (but the newest) into `base`; drop episodes ended before it.

        No late fix reaches back past `cutoff` (the horizon behind the key's newest observation), so
        `state_before` of any later replay is unchanged.
        """
        trail = self.trail
        if trail and trail[0][0] < cutoff:
            drop = 0
            while drop < len(trail) - 1 and trail[drop][0] < cutoff:
                drop += 1
            if drop:
                self.base = trail[drop - 1][1]
                del trail[:drop]
        first = self.episodes[0] if self.episodes else None
        if first is not None and first.end is not None and first.end < cutoff:
            self.episodes = [e for e in self.episodes if e.end is None or e.end >= cutoff]


@dataclass(frozen=True, slots=True)
class Derived:
    """What the machine makes of a key's checks since `t0`: its trail, episodes and final state.

    `marks[i]`: indices (into the checks) of episode i's alert, clear and upgrade, where they happened.
    """

    trail: list[tuple[int, State]]
    episodes: list[Episode]
    marks: list[list[int | None]]
    final: State


def derive(
    policy: Debounce, start: State, carried: Episode | None, checks: list[tuple[int, bool, bool]]
) -> Derived:
    """Run the machine from `start` over (ts, breach, confirmed) checks in event-time order.

    `carried` is the episode already open before the first check (when `start` is open).
    """
    state = start
    trail: list[tuple[int, State]] = []
    episodes: list[Episode] = []
    marks: list[list[int | None]] = []
    if start[0] is not None:
        # A carried episode that was kept (raised against the time-order evidence) stays marked so.
        kept = carried.kept if carried else False
        episodes.append(Episode(carried.start if carried else checks[0][0], None, start[0], kept=kept))
        marks.append([None, None, None])
    for i, (ts, breach, confirmed) in enumerate(checks):
        after, kind = transition(policy, state, ts, breach, confirmed)
        if after != state:
            trail.append((ts, after))
        if kind == "alert":
            episodes.append(Episode(ts, None, after[0] or "confirmed"))
            marks.append([i, None, None])
        elif kind == "cleared":
            episodes[-1].end, marks[-1][1] = ts, i
        elif kind == "confirmed":
            episodes[-1].confidence, marks[-1][2] = "confirmed", i
        state = after
    return Derived(trail, episodes, marks, state)


@dataclass(frozen=True, slots=True)
class Revision:
    """An episode whose event-time bounds late fixes changed (`was_*` None: revealed by late fixes)."""

    start: int
    end: int | None
    confidence: str
    was_start: int | None
    was_end: int | None


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The key's episodes since t0 after a late fix, its state now, and what to tell the alert record."""

    episodes: list[Episode]
    final: State
    # (kind, check index, confidence, late): all `late` but the reopening of a live episode a late
    # fix split in two, whose ongoing part was known live.
    events: list[tuple[Kind, int, str, bool]]
    revisions: list[Revision]


def reconcile(
    old: list[Episode], derived: Derived, live: str | None, checks: list[tuple[int, bool, bool]]
) -> Reconciled:
    """Move from the recorded episodes (`old`, those reaching t0 or later) to the derived ones.

    Two rules protect what was already said: the current state never flips against the newest check
    (an open alert stays open while the newest check is a breach, a closed one stays closed while it
    complies, though the machine fed the late fixes would say otherwise), and a raised alert is never
    retracted (an old episode no derived one overlaps is `kept`). Episodes held by either rule are
    marked `kept`: the only departures from in-order processing. Only changes the alert record can
    express go out as events: clearing the open alert at its event-time end, opening one for a
    revealed or resumed violation, a revealed closed episode (when no alert of the key is open), an
    upgrade; every change of bounds is also returned as a `Revision`.
    """
    episodes = [Episode(e.start, e.end, e.confidence, e.kept) for e in derived.episodes]
    marks = [m[:] for m in derived.marks]
    final = derived.final
    newest_ts, newest_breach = checks[-1][0], checks[-1][1]
    if live is not None and final[0] is None and newest_breach:  # would close while still in breach
        final = (live, 0, 0)
        live_old = next((o for o in old if o.end is None), Episode(checks[0][0], None, live))
        if episodes and (episodes[-1].end is None or episodes[-1].end > live_old.start):
            episodes[-1].end, episodes[-1].kept, marks[-1][1] = None, True, None
        else:
            episodes.append(Episode(live_old.start, None, live_old.confidence, kept=True))
            marks.append([None, None, None])
    elif live is None and final[0] is not None and not newest_breach:  # would open while compliant
        final = (None, 0, 0)
        episodes[-1].end, episodes[-1].kept, marks[-1][1] = newest_ts, True, len(checks) - 1
    used: set[int] = set()
    store_open = live is not None
    events: list[tuple[Kind, int, str, bool]] = []
    revisions: list[Revision] = []
    for n, (alert_i, clear_i, confirm_i) in zip(episodes, marks, strict=True):
        j = next((j for j, o in enumerate(old) if j not in used and o.overlaps(n)), None)
        if j is None:
            revisions.append(Revision(n.start, n.end, n.confidence, None, None))
            if not store_open and alert_i is not None:
                events.append(("alert", alert_i, n.confidence, not (live and clear_i is None)))
                if clear_i is not None:
                    events.append(("cleared", clear_i, n.confidence, True))
                store_open = clear_i is None
            continue
        used.add(j)
        o = old[j]
        if (o.start, o.end, o.confidence) != (n.start, n.end, n.confidence):
            revisions.append(Revision(n.start, n.end, n.confidence, o.start, o.end))
        if o.end is None and clear_i is not None:  # the open alert ended earlier, in event time
            events.append(("cleared", clear_i, n.confidence, True))
            store_open = False
        elif o.end is not None and n.end is None and not store_open:  # it goes on after all
            resumed = next((i for i, c in enumerate(checks) if c[0] > o.end), len(checks) - 1)
            events.append(("alert", resumed, n.confidence, True))
            store_open = True
        elif o.end is None and n.end is None and o.confidence != n.confidence and confirm_i is not None:
            events.append(("confirmed", confirm_i, "confirmed", True))
    if store_open and final[0] is None and live is not None:  # the record's open alert ended with no
        events.append(("cleared", len(checks) - 1, live, True))  # episode of `old` left to carry it
    kept = [Episode(o.start, o.end, o.confidence, kept=True) for j, o in enumerate(old) if j not in used]
    events.sort(key=lambda e: checks[e[1]][0])
    return Reconciled(sorted(episodes + kept, key=lambda e: e.start), final, events, revisions)
