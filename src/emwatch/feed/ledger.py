"""Which episode events become feed events, and their alert ids, decided in memory before any commit.

The pipeline publishes an alert the moment it is evaluated, so what `alerts` rows the commit will
touch must be known without asking PostgreSQL. This ledger mirrors the database's open episodes (one
open alert per subject, rule and zone) and hands out alert ids from a block reserved from the
`alerts.id` sequence (so a stray writer using the sequence never collides with us).

Single-writer assumption: one pipeline per database opens, confirms and clears alerts.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Collection, Iterable

from emwatch.model import AlertEvent

EpisodeKey = tuple[str, str, str]  # subject, rule, zone ('' for rules without one)
ID_BLOCK = 4_096  # alert ids reserved per round trip; refilled when half is used


def episode_key(ev: AlertEvent) -> EpisodeKey:
    """The key the `alerts_one_open_episode` index is unique on."""
    return ev.subject_id, ev.rule, ev.zone_id or ""


class AlertLedger:
    """Open alert episodes by key, and a reserve of alert ids."""

    def __init__(self, open_alerts: Iterable[tuple[EpisodeKey, int]], reserved_ids: Iterable[int]) -> None:
        self._open: dict[EpisodeKey, int] = dict(open_alerts)
        self._ids: deque[int] = deque(reserved_ids)
        self._highest = max(self._ids, default=max(self._open.values(), default=0))

    def open_alerts(self, open_alerts: dict[EpisodeKey, int]) -> None:
        """Replace the open episodes with what the database holds (at start)."""
        self._open = dict(open_alerts)
        self._highest = max(self._highest, max(self._open.values(), default=0))

    @property
    def ids_wanted(self) -> int:
        """How many ids to reserve now (0 while more than half a block is left)."""
        return ID_BLOCK if len(self._ids) < ID_BLOCK // 2 else 0

    def reserve(self, ids: Iterable[int]) -> None:
        """Add ids taken from the database sequence."""
        self._ids.extend(ids)
        self._highest = max(self._highest, max(self._ids, default=0))

    def _next_id(self) -> int:
        # An empty reserve means a long outage with many alerts: go on above every id seen (the
        # single-writer assumption makes that safe) rather than hold an alert back.
        self._highest = self._ids.popleft() if self._ids else self._highest + 1
        return self._highest

    def admit(
        self, events: list[AlertEvent], known_late: Collection[EpisodeKey] = ()
    ) -> list[AlertEvent]:
        """The events that change an alert, with their alert ids; mirrors `writer.write_alert_events`.

        An `alert` for an episode open already continues it (no new event), and so does a late one in
        `known_late` (on record already); a `cleared` or `confirmed` without an open episode changes
        nothing; a late `cleared` whose late `alert` was dropped is dropped.
        """
        out: list[AlertEvent] = []
        skip_clear: set[EpisodeKey] = set()
        for ev in events:
            key = episode_key(ev)
            if ev.type == "alert":
                if key in self._open or (ev.late and key in known_late):
                    if ev.late:
                        skip_clear.add(key)
                    continue
                alert_id = self._open[key] = self._next_id()
            elif ev.type == "cleared":
                if ev.late and key in skip_clear:
                    continue
                found = self._open.pop(key, None)
                if found is None:
                    continue
                alert_id = found
            elif ev.type == "confirmed":
                found = self._open.get(key)
                if found is None:
                    continue
                alert_id = found
            else:
                alert_id = ev.alert_id
            out.append(dataclasses.replace(ev, alert_id=alert_id))
        return out

    @property
    def open_count(self) -> int:
        return len(self._open)
