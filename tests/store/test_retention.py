"""Retention: fixes past their jurisdiction's period are purged, legal holds keep theirs, every purge is audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from emwatch import cli
from emwatch.store.db import connect_pool, migrate
from emwatch.store.retention import effective_retention, purge_fixes

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MARGIN = timedelta(hours=1)
DEFAULT_DAYS = 365
HELD_ALERT_AT = NOW - timedelta(days=400)

# The city sets 30 days; its office inherits them; the other district has no value: the default applies.
JURISDICTIONS = [("prov", None, None, "province"), ("city", "prov", 30, "city"), ("office", "city", None, "office"),
                 ("other", "prov", None, "district")]
SUBJECTS = {"s-office": "office", "s-other": "other", "s-held": "other", "s-released": "other"}

# (device, subject, age, kept?)
FIXES = [
    ("d-office", "s-office", timedelta(days=10), True),    # within the city's 30 days
    ("d-office", "s-office", timedelta(days=40), False),   # past them, though far within the default
    ("d-other", "s-other", timedelta(days=40), True),      # default 365 days
    ("d-other", "s-other", timedelta(days=400), False),
    ("d-held", "s-held", timedelta(days=400), True),       # during an alert under legal hold
    ("d-held", "s-held", timedelta(days=400, minutes=50), True),  # within the margin before it opened
    ("d-held", "s-held", timedelta(days=402), False),      # two days before: not evidence of it
    ("d-released", "s-released", timedelta(days=400), False),  # same episode, but no hold
    ("d-spare", None, timedelta(days=400), False),         # device with no subject: the default
    ("d-spare", None, timedelta(days=40), True),
]


@pytest.mark.parametrize(("tree", "expected"), [
    ({"a": (None, None)}, {"a": DEFAULT_DAYS}),
    ({"a": (None, 90), "b": ("a", None), "c": ("b", 7)}, {"a": 90, "b": 90, "c": 7}),
    ({"a": ("b", None), "b": ("a", None)}, {"a": DEFAULT_DAYS, "b": DEFAULT_DAYS}),  # a cycle ends the walk
    ({"a": ("gone", None)}, {"a": DEFAULT_DAYS}),                                    # parent not loaded
])
def test_effective_retention_inherits_from_the_nearest_ancestor(
    tree: dict[str, tuple[str | None, int | None]], expected: dict[str, int]
) -> None:
    assert effective_retention(tree, DEFAULT_DAYS) == expected


async def seed(dsn: str) -> None:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany("INSERT INTO jurisdictions (id, name, parent_id, retention_days, kind)"
                               " VALUES ($1, $1, $2, $3, $4)", JURISDICTIONS)
        await conn.executemany("INSERT INTO subjects (id, name, jurisdiction_id) VALUES ($1, $1, $2)",
                               list(SUBJECTS.items()))
        devices = {(d, s) for d, s, _, _ in FIXES}
        await conn.executemany("INSERT INTO devices (id, kind, subject_id) VALUES ($1, 'ankle', $2)", devices)
        await conn.executemany(
            "INSERT INTO fixes (device_id, ts, lat, lon, h3, subject_id) VALUES ($1, $2, 30.3, 120.1, 0, $3)",
            [(d, NOW - age, s) for d, s, age, _ in FIXES],
        )
        for subject, hold in (("s-held", True), ("s-released", False)):
            await conn.execute(
                "INSERT INTO alerts (rule, subject_id, severity, status, opened_at, cleared_at, legal_hold)"
                " VALUES ('zone_exit', $1, 'critical', 'cleared', $2, $3, $4)",
                subject, HELD_ALERT_AT - timedelta(minutes=5), HELD_ALERT_AT + timedelta(minutes=5), hold,
            )
    finally:
        await conn.close()


async def remaining(dsn: str) -> set[tuple[str, datetime]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {(r["device_id"], r["ts"]) for r in await conn.fetch("SELECT device_id, ts FROM fixes")}
    finally:
        await conn.close()


async def audit_rows(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT actor, detail FROM audit_log WHERE action = 'fixes.purge' ORDER BY id")
    finally:
        await conn.close()
    return [{"actor": r["actor"], "detail": json.loads(r["detail"])} for r in rows]


async def test_purge_keeps_what_retention_and_legal_hold_require_and_audits_it(fresh_database_url: str) -> None:
    await seed(fresh_database_url)
    async with connect_pool(fresh_database_url, min_size=1, max_size=1) as pool:
        dry = await purge_fixes(pool, default_days=DEFAULT_DAYS, hold_margin=MARGIN, now=NOW, dry_run=True)
        assert len(await remaining(fresh_database_url)) == len(FIXES) and await audit_rows(fresh_database_url) == []
        result = await purge_fixes(pool, default_days=DEFAULT_DAYS, hold_margin=MARGIN, now=NOW, actor="test")

    expected = {(d, NOW - age) for d, _, age, kept in FIXES if kept}
    assert await remaining(fresh_database_url) == expected
    purged = sum(not kept for *_, kept in FIXES)
    assert (dry.purged, dry.held) == (result.purged, result.held) == (purged, 2)
    assert result.overrides == {"city": 30, "office": 30}
    [audit] = await audit_rows(fresh_database_url)
    assert (audit["actor"], audit["detail"]["purged"], audit["detail"]["held"]) == ("test", purged, 2)


async def test_lifting_the_hold_lets_the_next_purge_take_the_fixes(fresh_database_url: str) -> None:
    await seed(fresh_database_url)
    async with connect_pool(fresh_database_url, min_size=1, max_size=1) as pool:
        await purge_fixes(pool, default_days=DEFAULT_DAYS, hold_margin=MARGIN, now=NOW)
        await pool.execute("UPDATE alerts SET legal_hold = false")
        second = await purge_fixes(pool, default_days=DEFAULT_DAYS, hold_margin=MARGIN, now=NOW)
    assert (second.purged, second.held) == (2, 0)
    assert not any(device == "d-held" for device, _ in await remaining(fresh_database_url))
    assert [r["detail"]["purged"] for r in await audit_rows(fresh_database_url)] == [sum(not k for *_, k in FIXES), 2]


def test_cli_purge_uses_the_retention_setting(fresh_database_url: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    asyncio.run(seed(fresh_database_url))
    monkeypatch.setenv("EMWATCH_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("EMWATCH_RETENTION_DAYS", "5")  # everything older than 5 days goes, held ones stay
    assert cli.main(["purge"]) == 0
    assert "kept 2 under legal hold" in capsys.readouterr().out
    devices = {device for device, _ in asyncio.run(remaining(fresh_database_url))}
    assert devices == {"d-held"}
