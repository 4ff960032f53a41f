"""What the episode book holds per key, by key code, and the sorted code table a batch looks it up in.

State is keyed by the int64 code of the key under the current registry (an int hashes in C; an
`EpisodeKey` does not). A reload re-codes every key; a key the new registry cannot address (its
subject or zone is gone) keeps its state under a negative code no check can have, until a later
registry knows it again. The `FlaggedCodes` table mirrors the dicts for whole-batch lookups and is
patched after each batch with only the codes it changed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import NDArray

from emwatch.alerts.episode_codes import CodeSet, EpisodeKey, FlaggedCodes, KeyCodes
from emwatch.alerts.episode_events import EventMaker
from emwatch.alerts.timeline import IMMEDIATE, Debounce, Episode, Revision, State, Timeline
from emwatch.registry import Registry
from emwatch.rules.catalog import RULES, ZONE_RULES

DEFAULT_HORIZON_MS = 300_000
# Flags of a code in the table; a code with none of OPEN, PENDING, RECENT is not in it.
OPEN, PENDING, POSSIBLE, RECENT, ZONE_PAIR = 1, 2, 4, 8, 16
ZONE_RULE_CODES = [code in ZONE_RULES for code in range(len(RULES))]


class EpisodeState:
    """Open episodes (with their confidence) and partial evidence towards opening or clearing one."""

    def __init__(
        self, registry: Registry, open_keys: Iterable[EpisodeKey] = (),
        policies: Mapping[str, Debounce] | None = None, horizon_ms: int = DEFAULT_HORIZON_MS,
    ) -> None:
        self.codes = KeyCodes(registry)
        self._orphans: dict[int, EpisodeKey] = {}  # negative code -> key the registry cannot address
        self._orphan_code: dict[EpisodeKey, int] = {}
        self._open: dict[int, str] = {self._code(k, self.codes): "confirmed" for k in open_keys}
        self._pending: dict[int, tuple[int, int]] = {}  # (consecutive checks, since ts)
        self._policies = dict(policies or {})
        self._policy_by_rule = [self._policies.get(r, IMMEDIATE) for r in RULES]
        self.horizon_ms = horizon_ms  # the reorder horizon: how far back a late fix is re-derived
        self._timelines: dict[int, Timeline] = {}
        self._timeline_new: list[int] = []  # codes not yet in `_timeline_codes`
        # (ts, code): the key of a timeline closed at ts; its timeline goes once that is beyond the horizon.
        self._closed_order: deque[tuple[int, int]] = deque()
        # Closed within the horizon: still watched, so a replay sees every fix that could reopen them.
        self._recent: dict[int, int] = {}
        self._recent_order: deque[tuple[int, int]] = deque()
        self._newest_ts = 0
        self.revisions: deque[tuple[EpisodeKey, Revision]] = deque(maxlen=10_000)
        self.rebind(registry)

    @property
    def timelines(self) -> int:
        """How many keys keep a timeline: those open, pending or changed within the horizon (memory)."""
        return len(self._timelines)

    @property
    def open_keys(self) -> frozenset[EpisodeKey]:
        return frozenset(self._key(c) for c in self._open)

    def episodes(self) -> list[tuple[EpisodeKey, Episode]]:
        """Every episode still within the horizon, with event-time start/end (the late-fix ledger)."""
        return [(self._key(c), e) for c, t in self._timelines.items() for e in t.episodes]

    def take_revisions(self) -> list[tuple[EpisodeKey, Revision]]:
        """Episode bounds late fixes changed since the last call (for a store that can revise them)."""
        out = list(self.revisions)
        self.revisions.clear()
        return out

    def rebind(self, registry: Registry) -> None:
        """Re-code every key for a changed registry and rebuild the views."""
        old, new = self.codes, KeyCodes(registry)
        if old.registry is not registry:
            moved: dict[int, int] = {}

            def move(code: int) -> int:
                if (to := moved.get(code)) is None:
                    to = moved[code] = self._code(self._key(code, old), new)
                return to

            self._open = {move(c): v for c, v in self._open.items()}
            self._pending = {move(c): v for c, v in self._pending.items()}
            self._timelines = {move(c): v for c, v in self._timelines.items()}
            self._recent = {move(c): v for c, v in self._recent.items()}
            self._recent_order = deque((ts, move(c)) for ts, c in self._recent_order)
            self._closed_order = deque((ts, move(c)) for ts, c in self._closed_order)
        self.registry, self.codes, self.event_maker = registry, new, EventMaker(registry)
        self._refresh()

    def open_pairs(self) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """(subject, zone) of every open, pending or recently closed zone episode, sorted by subject."""
        return self.open_subject, self.open_zone

    def _code(self, key: EpisodeKey, codes: KeyCodes) -> int:
        """The key's code under `codes`, or its (negative) orphan code."""
        code = codes.code_of(key)
        if code is None:
            code = self._orphan_code.get(key)
            if code is None:
                code = self._orphan_code[key] = -1 - len(self._orphan_code)
                self._orphans[code] = key
        return code

    def _key(self, code: int, codes: KeyCodes | None = None) -> EpisodeKey:
        return (codes or self.codes).key_of(code) if code >= 0 else self._orphans[code]

    def _flags(self, code: int) -> int:
        conf = self._open.get(code)
        return (
            (0 if conf is None else OPEN | (POSSIBLE if conf == "possible" else 0))
            | (PENDING if code in self._pending else 0) | (RECENT if code in self._recent else 0)
        )

    def _refresh(self) -> None:
        """Rebuild the code table from scratch (after a registry change)."""
        held = sorted(c for c in {*self._open, *self._pending, *self._recent} if c >= 0)
        codes = np.array(held, dtype=np.int64)
        flags = np.array([self._flags(c) for c in held], dtype=np.uint8)
        flags |= np.where(self.codes.zone_pairs(codes), ZONE_PAIR, 0).astype(np.uint8)
        self._table = FlaggedCodes(codes, flags)
        # How many codes of each subject the table holds: a check of a subject with none needs no lookup.
        self._held = np.zeros(len(self.registry.subject_ids), dtype=np.int32)
        np.add.at(self._held, self.codes.subject_zone(codes)[0], 1)
        self._timeline_codes = CodeSet(np.array(sorted(c for c in self._timelines if c >= 0), dtype=np.int64))
        self._timeline_new.clear()
        self._derive_zone_pairs()

    def _sync(self, touched: set[int]) -> None:
        """Update the code table for the codes (>= 0) one batch touched: O(changes), not O(held)."""
        if not touched:
            return
        codes = np.fromiter(touched, dtype=np.int64, count=len(touched))
        flags = np.fromiter(map(self._flags, touched), dtype=np.uint8, count=len(touched))
        flags |= np.where((flags != 0) & self.codes.zone_pairs(codes), ZONE_PAIR, 0).astype(np.uint8)
        before = self._table.flags_of(codes)
        self._table.set(codes, flags)
        was = before != 0
        change = ((flags != 0) != was) & (codes >= 0)  # a negative code (no subject) is always looked up
        if change.any():
            np.add.at(self._held, self.codes.subject_zone(codes[change])[0], np.where(was[change], -1, 1))
        self._patch_zone_pairs(codes, before >= ZONE_PAIR, flags >= ZONE_PAIR)

    def _flags_of_rows(self, subject: NDArray[np.int32], code: NDArray[np.int64]) -> NDArray[np.uint8]:
        """`FlaggedCodes.flags_of(code)` of check rows, looked up only for subjects holding some code."""
        maybe = np.flatnonzero((subject < 0) | (self._held[subject] > 0))
        if len(maybe) == len(code):
            return self._table.flags_of(code)
        flags = np.zeros(len(code), dtype=np.uint8)
        flags[maybe] = self._table.flags_of(code[maybe])
        return flags

    def _derive_zone_pairs(self) -> None:
        # Codes sort by subject first (the most significant part), so the pairs come out sorted by subject.
        # Pending and recently closed keys too: a fix far from a shared zone must still be checked
        # against it, or evidence towards a change (and a replay of late fixes) would miss it.
        table = self._table
        self._zone_codes = table.codes[table.flags >= ZONE_PAIR]
        self.open_subject, self.open_zone = self.codes.subject_zone(self._zone_codes)

    def _patch_zone_pairs(
        self, codes: NDArray[np.int64], before: NDArray[np.bool_], after: NDArray[np.bool_]
    ) -> None:
        """`_derive_zone_pairs` for a change of the (distinct) `codes` only: no pass over every held code."""
        zone_codes, subject, zone = self._zone_codes, self.open_subject, self.open_zone
        drop = codes[before & ~after]
        if len(drop):
            at = np.searchsorted(zone_codes, drop)
            zone_codes, subject, zone = np.delete(zone_codes, at), np.delete(subject, at), np.delete(zone, at)
        add = np.sort(codes[after & ~before])
        if len(add):
            at = np.searchsorted(zone_codes, add)
            add_subject, add_zone = self.codes.subject_zone(add)
            zone_codes = np.insert(zone_codes, at, add)
            subject, zone = np.insert(subject, at, add_subject), np.insert(zone, at, add_zone)
        self._zone_codes, self.open_subject, self.open_zone = zone_codes, subject, zone

    def _timelines_indexed(self) -> CodeSet:
        """`_timeline_codes` with the timelines started since it was last brought up to date."""
        if self._timeline_new:
            new = np.array(self._timeline_new, dtype=np.int64)
            self._timeline_codes.place(new, np.ones(len(new), dtype=bool))
            self._timeline_new.clear()
        return self._timeline_codes

    def _forget_recent(self, touched: set[int]) -> None:
        """Stop watching keys closed longer ago than the horizon (they join `touched` for the table)."""
        cutoff = self._newest_ts - self.horizon_ms
        order = self._recent_order
        while order and order[0][0] < cutoff:
            ts, code = order.popleft()
            if self._recent.get(code) == ts:
                del self._recent[code]
                if code >= 0:
                    touched.add(code)

    def _forget_timelines(self) -> None:
        """Drop the timelines of keys closed, with no change since, longer ago than the horizon.

        No late fix inside the horizon reaches back past that close, and a replay of a key without a
        timeline starts from its current (closed) state: what the timeline would have given it.
        Each close is queued once and looked at once (again only while an episode of it is recent).
        """
        cutoff = self._newest_ts - self.horizon_ms
        order, timelines = self._closed_order, self._timelines
        dropped: list[int] = []
        while order and order[0][0] < cutoff:
            ts, code = order.popleft()
            timeline = timelines.get(code)
            if timeline is None or code in self._open or code in self._pending:
                continue  # gone already, or not closed now: its next close is queued
            if timeline.trail and timeline.trail[-1][0] > ts:
                continue  # it changed since, and ends closed: that close is queued too
            last = max((e.end for e in timeline.episodes if e.end is not None), default=ts)
            last = max(last, self._recent.get(code, ts))
            if last >= cutoff:
                order.append((last, code))
                continue
            del timelines[code]
            if code >= 0:
                dropped.append(code)
        if dropped:
            codes = np.array(dropped, dtype=np.int64)
            self._timelines_indexed().place(codes, np.zeros(len(codes), dtype=bool))

    def _closed(self, code: int, ts: int) -> None:
        """The key of a timeline closed at `ts` (its timeline may go one horizon later)."""
        self._closed_order.append((ts, code))

    def _state(self, code: int) -> State:
        count, since = self._pending.get(code, (0, 0))
        return self._open.get(code), count, since

    def _set_state(self, code: int, state: State, ts: int, zone_rule: bool) -> None:
        conf, count, since = state
        if conf is None:
            if self._open.pop(code, None) is not None and zone_rule:
                self._watch(code, ts)
        else:
            self._open[code] = conf
        if count:
            self._pending[code] = (count, since)
        else:
            self._pending.pop(code, None)

    def _watch(self, code: int, ts: int) -> None:
        """Keep checking a key closed at `ts` for the length of the horizon."""
        if ts >= self._recent.get(code, ts):
            self._recent[code] = ts
            self._recent_order.append((ts, code))
