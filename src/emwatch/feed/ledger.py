"""Which episode events become feed events, and their alert ids, decided in memory before any commit.

The pipeline publishes an alert the moment it is evaluated, so what `alerts` rows the commit will
touch must be known without asking PostgreSQL. This ledger mirrors the database's open episodes (one
open alert per subject, rule and zone) and hands out alert ids from a block reserved from the
`alerts.id` sequence (so a stray writer using the sequence never collides with us).

It also remembers, for the reorder horizon, the event-time bounds of the alerts it admitted, so a
late fix that moves an episode's start or end (`EpisodeBook.take_revisions()`) can be turned into a
`revised` event for the right alert (`revise`).

Single-writer assumption: one pipeline per database opens, confirms and clears alerts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from prometheus_client import Counter

from emwatch.alerts.timeline import Revision
from emwatch.model import AlertEvent

log = logging.getLogger(__name__)
EpisodeKey = tuple[str, str, str]  # subject, rule, zone ('' for rules without one)
ID_BLOCK = 4_096  # alert ids reserved per round trip; refilled when half is used
DEFAULT_HORIZON_MS = 300_000
REVISIONS_SKIPPED = Counter(
    "emwatch_revisions_skipped_total",
    "Revisions of an alert the ledger does not know (beyond the horizon, or raised before a restart).",
)


@dataclass(slots=True)
class Known:
    """An alert admitted within the horizon: its id, event-time bounds and the event that opened it."""

    alert_id: int
    start: int
    end: int | None
    opened: AlertEvent  # rule, subject, jurisdiction, device, zone, severity for its `revised` events


def episode_key(ev: AlertEvent) -> EpisodeKey:
    """The key the `alerts_one_open_episode` index is unique on."""
    return ev.subject_id, ev.rule, ev.zone_id or ""


class AlertLedger:
    """Open alert episodes by key, and a reserve of alert ids."""

    def __init__(
        self, open_alerts: Iterable[tuple[EpisodeKey, int]], reserved_ids: Iterable[int],
        horizon_ms: int = DEFAULT_HORIZON_MS,
    ) -> None:
        self._open: dict[EpisodeKey, int] = dict(open_alerts)
        self._ids: deque[int] = deque(reserved_ids)
        self._highest = max(self._ids, default=max(self._open.values(), default=0))
        self.horizon_ms = horizon_ms
        # Alerts admitted by this process, open or closed within the horizon (not those read at start:
        # the episode book has no event-time history of them either, so it never revises them).
        self._known: dict[EpisodeKey, list[Known]] = {}
        self._closed: deque[tuple[int, EpisodeKey]] = deque()  # (end, key), roughly in end order
        self._newest = 0

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
            self._remember(key, ev, alert_id)
            out.append(ev.numbered(alert_id=alert_id))
        self._forget_old()
        return out

    def _remember(self, key: EpisodeKey, ev: AlertEvent, alert_id: int) -> None:
        self._newest = max(self._newest, ev.ts)
        if ev.type == "alert":
            self._known.setdefault(key, []).append(Known(alert_id, ev.ts, None, ev))
        elif ev.type in ("cleared", "confirmed"):
            for k in self._known.get(key, ()):
                if k.alert_id == alert_id:
                    if ev.type == "cleared":
                        k.end = ev.ts
                        self._closed.append((ev.ts, key))
                    else:
                        k.opened = dataclasses.replace(k.opened, confidence="confirmed")

    def _forget_old(self) -> None:
        """Drop alerts closed longer ago than the horizon: no late fix may revise them any more."""
        cutoff = self._newest - self.horizon_ms
        while self._closed and self._closed[0][0] < cutoff:
            _, key = self._closed.popleft()
            keep = [k for k in self._known.get(key, ()) if k.end is None or k.end >= cutoff]
            if keep:
                self._known[key] = keep
            else:
                self._known.pop(key, None)

    def revise(self, revisions: Iterable[tuple[EpisodeKey, Revision]]) -> list[AlertEvent]:
        """`revised` events (alert id assigned) for the revisions that move a known alert's bounds.

        A revision of an episode revealed by late fixes (`was_start` None) is not a correction: it was
        raised by its own events, or kept in the episode book only. A revision of an alert not known
        here is skipped and counted. The record never reopens nor closes through a revision (events do
        that): a closed alert's end moves, an open alert's stays open.
        """
        out: list[AlertEvent] = []
        for key, rev in revisions:
            if rev.was_start is None:
                continue
            known = self._match(key, rev)
            if known is None:
                REVISIONS_SKIPPED.inc()
                log.debug("revision of an unknown alert skipped: rule %s, start %d", key[1], rev.was_start)
                continue
            end = rev.end if known.end is not None and rev.end is not None else known.end
            if (rev.start, end) == (known.start, known.end):
                continue
            data = {"opened_at": rev.start, "cleared_at": end,
                    "was_opened_at": known.start, "was_cleared_at": known.end}
            known.start, known.end = rev.start, end
            # `late` and `confidence` stay the alert's own, as a replay from the alert row shows them.
            out.append(dataclasses.replace(
                known.opened, type="revised", alert_id=known.alert_id, seq=0, ts=rev.start, lat=None,
                lon=None, data=data,
            ))
        return out

    def _match(self, key: EpisodeKey, rev: Revision) -> Known | None:
        """The alert a revision's former bounds describe: the open one for the book's open episode (one
        per key), else the one that started (and, if several did, ended) where the episode did."""
        known = self._known.get(key, [])
        if rev.was_end is None and (open_id := self._open.get(key)) is not None:
            return next((k for k in known if k.alert_id == open_id), None)
        starts = [k for k in known if k.start == rev.was_start]
        return next((k for k in starts if k.end == rev.was_end), starts[0] if starts else None)

    @property
    def open_count(self) -> int:
        return len(self._open)
