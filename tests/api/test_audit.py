"""Every read of a track, every change and every alert action leaves an audit row; the rows cannot change."""

from __future__ import annotations

import asyncpg
import pytest

from tests.api.conftest import World


async def audit_rows(world: World, **params: object) -> list[dict[str, object]]:
    r = await world.service.http.get("/api/audit", params={"limit": 50, **params})
    assert r.status_code == 200, r.text
    return list(r.json())


async def test_a_track_read_is_audited_with_who_what_when_and_where(world: World) -> None:
    subject = world.subjects["s1"]
    r = await world.client("op1").get(f"/api/subjects/{subject}/track", headers={"User-Agent": "audit-test"})
    assert r.status_code == 200
    (row, *_) = await audit_rows(world, actor=f"{world.tag}-op1", action="subject.track.read")
    assert row["target_type"] == "subject" and row["target_id"] == subject
    assert (row["outcome"], row["role"], row["jurisdiction_id"]) == ("ok", "operator", world.j("o1"))
    assert row["remote_addr"] == "127.0.0.1" and row["user_agent"] == "audit-test"
    assert row["detail"]["fixes"] == 1 and "start" in row["detail"] and row["ts"]


async def test_a_refused_track_read_is_audited_as_denied(world: World) -> None:
    subject = world.subjects["s3"]
    assert (await world.client("op1").get(f"/api/subjects/{subject}/track")).status_code == 404
    rows = await audit_rows(world, actor=f"{world.tag}-op1", target_id=subject)
    assert rows[0]["action"] == "subject.track.read" and rows[0]["outcome"] == "denied"


@pytest.mark.parametrize(("action", "target_type"), [
    ("subject.create", "subject"), ("device.create", "device"), ("zone.create", "zone"),
    ("caseload.assign", "subject"), ("user.create", "user"), ("login", None),
])
async def test_changes_and_logins_are_audited(world: World, action: str, target_type: str | None) -> None:
    rows = await audit_rows(world, action=action)
    assert rows and all(r["target_type"] == target_type for r in rows)


async def test_a_supervisor_reads_the_trail_of_their_subtree_only(world: World) -> None:
    await world.client("op1").get(f"/api/subjects/{world.subjects['s1']}/track")
    await world.client("off3").get(f"/api/subjects/{world.subjects['s3']}/track")
    r = await world.client("sup1").get("/api/audit", params={"action": "subject.track.read"})
    actors = {row["actor"] for row in r.json()}
    assert f"{world.tag}-op1" in actors and f"{world.tag}-off3" not in actors


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log", "TRUNCATE audit_log",
])
async def test_the_audit_log_is_append_only(world: World, statement: str) -> None:
    conn = await asyncpg.connect(world.svc.settings.database_url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM audit_log")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == before
    finally:
        await conn.close()
