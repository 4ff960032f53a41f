"""The notification outbox: who hears of an alert event, written in the alert's own transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson

from emwatch.model import AlertEvent

NOTIFY_TYPES = frozenset({"alert", "confirmed"})  # a new breach, or a possible one confirmed
SEVERITY_RANK = {"warning": 0, "serious": 1, "critical": 2}

# Officers on each subject's caseload, one row per channel target they chose; then the webhooks of each
# subject's jurisdiction and its ancestors. One round trip for all the alert events of a commit.
_RECIPIENTS = """
WITH RECURSIVE up(subject_id, id, parent_id) AS (
    SELECT s.id, j.id, j.parent_id FROM subjects s JOIN jurisdictions j ON j.id = s.jurisdiction_id
    WHERE s.id = ANY ($1::text[])
    UNION SELECT up.subject_id, j.id, j.parent_id FROM jurisdictions j JOIN up ON j.id = up.parent_id
)
SELECT c.subject_id, c.officer AS username, ch.channel, ch.target,
       coalesce(p.min_severity, 'warning') AS min_severity, p.quiet_start, p.quiet_end, p.timezone
FROM caseload c
JOIN users u ON u.username = c.officer AND NOT u.disabled
LEFT JOIN notify_preferences p ON p.username = c.officer
CROSS JOIN LATERAL (
    SELECT 'mqtt'::text AS channel, ''::text AS target
    UNION ALL SELECT 'webpush', ps.id::text FROM push_subscriptions ps WHERE ps.username = c.officer
) ch
WHERE c.subject_id = ANY ($1::text[]) AND (p.channels IS NULL OR ch.channel = ANY (p.channels))
UNION ALL
SELECT s.id, NULL, 'webhook', w.id::text, w.min_severity, NULL, NULL, NULL
FROM unnest($1::text[]) AS s (id) CROSS JOIN webhooks w
WHERE w.enabled
  AND (w.jurisdiction_id IS NULL OR w.jurisdiction_id IN (SELECT up.id FROM up WHERE up.subject_id = s.id))
"""

_INSERT = (
    "INSERT INTO notifications (alert_seq, alert_id, username, channel, target, payload, next_attempt_at)"
    " VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, coalesce($7, '-infinity'::timestamptz))"
    " ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One delivery target of an alert event and the officer's preferences that shape it."""

    username: str | None
    channel: str
    target: str
    min_severity: str
    quiet_start: time | None
    quiet_end: time | None
    timezone: str | None


def payload_of(ev: AlertEvent, seq: int, alert_id: int) -> dict[str, Any]:
    """What every channel carries: the feed's wire shape (docs/protocol.md) of the committed event."""
    return ev.numbered(seq=seq, alert_id=alert_id).to_message()


def quiet_until(at: datetime, start: time | None, end: time | None, tz: str | None) -> datetime | None:
    """End of the quiet period `at` falls in (an aware datetime), or None when `at` is not quiet."""
    if start is None or end is None or start == end:
        return None
    try:
        zone = ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = at.astimezone(zone)
    now = local.time().replace(tzinfo=None)
    inside = start <= now < end if start < end else (now >= start or now < end)  # wraps midnight
    if not inside:
        return None
    day = local.date() if now < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=zone)


def plan(
    ev: AlertEvent, at: datetime, recipients: list[Recipient]
) -> list[tuple[Recipient, datetime | None]]:
    """Who gets this event and when (None: at once); severity filters, quiet hours defer all but critical."""
    rank = SEVERITY_RANK.get(ev.severity, 0)
    out: list[tuple[Recipient, datetime | None]] = []
    for r in recipients:
        if rank < SEVERITY_RANK.get(r.min_severity, 0):
            continue
        # at once, not at the fix's time: a device clock running ahead must not delay the officer
        due: datetime | None = None
        if ev.severity != "critical" and (until := quiet_until(at, r.quiet_start, r.quiet_end, r.timezone)):
            due = until  # deferred, not dropped: the officer reads it when the quiet hours end
        out.append((r, due))
    return out


async def enqueue(conn: asyncpg.Connection, ev: AlertEvent, seq: int, alert_id: int, at: datetime) -> int:
    """Insert the notifications of one committed alert event; must run in the event's transaction."""
    return await enqueue_many(conn, [(ev, seq, alert_id, at)])


async def enqueue_many(
    conn: asyncpg.Connection, committed: Sequence[tuple[AlertEvent, int, int, datetime]]
) -> int:
    """Insert the notifications of committed alert events (event, seq, alert id, commit time) in two
    round trips whatever their number; must run in the events' transaction. Returns how many rows."""
    notable = [c for c in committed if c[0].type in NOTIFY_TYPES]
    if not notable:
        return 0
    recipients: dict[str, list[Recipient]] = {}
    for r in await conn.fetch(_RECIPIENTS, sorted({ev.subject_id for ev, _, _, _ in notable})):
        row = dict(r)
        recipients.setdefault(row.pop("subject_id"), []).append(Recipient(**row))
    rows = []
    for ev, seq, alert_id, at in notable:
        planned = plan(ev, at, recipients.get(ev.subject_id, []))
        if planned:
            body = orjson.dumps(payload_of(ev, seq, alert_id)).decode()
            rows += [(seq, alert_id, r.username, r.channel, r.target, body, due) for r, due in planned]
    if rows:
        await conn.executemany(_INSERT, rows)
    return len(rows)


# Escalation (lifecycle.escalate_due appends an `escalated` event): the supervisors and operators of the
# jurisdiction the alert escalated to hear of it, on MQTT and their push subscriptions. Swept by the
# sender rather than written by lifecycle; the unique key makes a repeated sweep (or a restart) a no-op.
_ESCALATIONS = """
WITH esc AS (
    SELECT e.seq, a.id AS alert_id, a.escalated_to, jsonb_build_object(
        'seq', e.seq, 'id', a.id, 'type', 'escalated', 'rule', a.rule, 'subject_id', a.subject_id,
        'jurisdiction_id', s.jurisdiction_id, 'device_id', a.device_id, 'zone_id', a.zone_id,
        'ts', (extract(epoch FROM e.ts) * 1000)::bigint, 'lat', a.lat, 'lon', a.lon, 'severity', a.severity,
        'confidence', a.confidence, 'escalated_to', a.escalated_to, 'escalation_level', a.escalation_level
    ) AS payload
    FROM alert_events e JOIN alerts a ON a.id = e.alert_id JOIN subjects s ON s.id = a.subject_id
    WHERE e.type = 'escalated' AND e.seq > $1 AND a.lifecycle = 'open'
), inserted AS (
    INSERT INTO notifications (alert_seq, alert_id, username, channel, target, payload, next_attempt_at)
    SELECT esc.seq, esc.alert_id, u.username, ch.channel, ch.target, esc.payload, '-infinity'
    FROM esc
    JOIN users u ON u.jurisdiction_id = esc.escalated_to AND u.role IN ('supervisor', 'operator')
        AND NOT u.disabled
    LEFT JOIN notify_preferences p ON p.username = u.username
    CROSS JOIN LATERAL (
        SELECT 'mqtt'::text AS channel, ''::text AS target
        UNION ALL SELECT 'webpush', ps.id::text FROM push_subscriptions ps WHERE ps.username = u.username
    ) ch
    -- their channels, but not their severity or quiet hours: an escalation is the "someone must look" path
    WHERE p.channels IS NULL OR ch.channel = ANY (p.channels)
    ON CONFLICT DO NOTHING
)
SELECT coalesce(max(seq), $1) FROM esc
"""


async def enqueue_escalations(pool: asyncpg.Pool, after_seq: int) -> int:
    """Notify the escalation target of every `escalated` event after `after_seq`; returns the new mark."""
    return int(await pool.fetchval(_ESCALATIONS, after_seq))


# An acknowledged alert needs no more people told of it: what reached a person becomes `acknowledged`, and
# what has not reached them yet (deferred by quiet hours, retrying, an escalation) is withdrawn the same
# way (delivered_at stays NULL). Webhooks are records for other agency systems, not people: they go on.
_ACKNOWLEDGED = """
UPDATE notifications SET status = 'acknowledged', acknowledged_at = $2
WHERE alert_id = $1 AND channel <> 'webhook' AND status IN ('pending', 'sent', 'delivered')
"""


async def acknowledge(conn: asyncpg.Connection, alert_id: int, at: datetime) -> int:
    """Close the officer notifications of an alert someone acknowledged; returns how many rows."""
    result: str = await conn.execute(_ACKNOWLEDGED, alert_id, at)
    return int(result.rsplit(" ", 1)[-1])
