"""Work the service does on its own: create the first admin, escalate unacknowledged alerts."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from emwatch.api.deps import Services
from emwatch.api.tokens import hash_password
from emwatch.model import AlertEvent
from emwatch.store import audit, lifecycle, users

log = logging.getLogger(__name__)


async def bootstrap_admin(pool: asyncpg.Pool, spec: str | None) -> None:
    """Create the admin named by EMWATCH_BOOTSTRAP_ADMIN=`user:password` unless it exists (never reset)."""
    if not spec:
        return
    username, sep, password = spec.partition(":")
    if not sep or not username or not password:
        raise ValueError("EMWATCH_BOOTSTRAP_ADMIN must be user:password")
    if await users.get_user(pool, username) is not None:
        return
    try:
        await users.create_user(pool, username, hash_password(password), "admin", None, "bootstrap admin")
    except users.UserExists:  # another instance starting at the same moment created it
        return
    await audit.record(pool, audit.AuditEntry(
        actor="system", action="user.create", target_type="user", target_id=username,
        detail={"role": "admin", "bootstrap": True},
    ))
    log.info("created bootstrap admin %r", username)


def escalation_policy(minutes: dict[str, float]) -> dict[str, timedelta]:
    """Settings' minutes per severity as timedeltas."""
    return {severity: timedelta(minutes=m) for severity, m in minutes.items()}


async def escalate_once(svc: Services) -> list[AlertEvent]:
    """Escalate what is due at the service clock's now and announce it on the feed."""
    now = datetime.fromtimestamp(svc.clock(), tz=UTC)
    messages = await lifecycle.escalate_due(svc.pool, now, escalation_policy(svc.settings.escalate_after_min))
    events = [AlertEvent.from_message(m) for m in messages]
    if events:
        events = svc.feed.publish(events)  # with their feed seqs (store/lifecycle.py)
        log.info("escalated %d unacknowledged alert(s)", len(events))
    return events


async def escalation_loop(svc: Services) -> None:
    """Run `escalate_once` every `escalation_check_s` until cancelled; a failed round is retried."""
    while True:
        await asyncio.sleep(svc.settings.escalation_check_s)
        try:
            await escalate_once(svc)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("escalation check failed (%r); retrying next round", exc)
