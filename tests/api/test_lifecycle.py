"""Alert lifecycle: open → acknowledged → resolved (note + category), escalation on the service clock, bulk, evidence."""

from __future__ import annotations

import pytest

from emwatch.api.background import escalate_once
from tests.api.conftest import ESCALATE_AFTER_MIN, World, new_subject
from tests.e2e.conftest import COUNTY, OUTSIDE, feed, now_ms


async def new_alert(world: World, office: str = "o1") -> tuple[str, int, int]:
    """A fresh subject in `office` whose bracelet just left its zone; returns (subject, alert id, fix ts)."""
    tag, _ = await new_subject(world, office)
    ts = now_ms()
    await world.service.publish_fix(f"{tag}-dev", *OUTSIDE, ts=ts)
    await world.service.drain()
    (alert,) = (await world.service.http.get("/api/alerts", params={"subject_id": tag, "rule": "zone_exit"})).json()
    return tag, alert["id"], ts


async def alert(world: World, alert_id: int) -> dict[str, object]:
    r = await world.service.http.get(f"/api/alerts/{alert_id}/evidence")
    return dict(r.json()["alert"])


async def escalate_at(world: World, epoch_s: float) -> list[int]:
    """Run the escalation check with the service clock at `epoch_s`; returns the alert ids escalated."""
    world.clock.offset = epoch_s - world.clock() + world.clock.offset
    try:
        return [e.alert_id for e in await escalate_once(world.svc)]
    finally:
        world.clock.offset = 0


async def test_unacknowledged_alert_escalates_one_level_per_period_up_to_the_root(world: World) -> None:
    _, alert_id, ts = await new_alert(world, "o1")  # o1 → d1 → c
    period = ESCALATE_AFTER_MIN * 60
    opened = ts / 1000
    table = [  # (seconds after opening, escalated now?, level, escalated_to)
        (period - 1, False, 0, None),
        (period + 1, True, 1, "d1"),
        (period + 2, False, 1, "d1"),  # once per level, not once per check
        (2 * period + 1, True, 2, "c"),
        (5 * period, False, 2, "c"),  # the city is the top: nothing above to tell
    ]
    for after, escalated, level, to in table:
        assert (alert_id in await escalate_at(world, opened + after)) is escalated, after
        a = await alert(world, alert_id)
        assert (a["escalation_level"], a["escalated_to"]) == (level, to and world.j(to)), after


async def test_escalation_is_re_announced_to_the_level_above(world: World) -> None:
    _, alert_id, ts = await new_alert(world, "o2")
    # The feed subscribes after the handshake (auth, audit): resuming from the seq known now, as a client
    # would, leaves no window in which the escalation could be published unseen.
    async with feed(world.service, None, since=world.svc.feed.last_seq, token=world.tokens["sup1"]) as supervisor:
        await escalate_at(world, ts / 1000 + ESCALATE_AFTER_MIN * 60 + 1)
        message = await supervisor.next()
        while message["id"] != alert_id:
            message = await supervisor.next()
    assert message["type"] == "escalated"


async def test_acknowledged_alert_does_not_escalate(world: World) -> None:
    _, alert_id, ts = await new_alert(world, "o1")
    r = await world.client("op1").post(f"/api/alerts/{alert_id}/ack")
    assert r.status_code == 200 and r.json()["type"] == "acknowledged"
    assert alert_id not in await escalate_at(world, ts / 1000 + 10 * ESCALATE_AFTER_MIN * 60)
    a = await alert(world, alert_id)
    assert (a["lifecycle"], a["acknowledged_by"], a["escalation_level"]) == ("acknowledged", f"{world.tag}-op1", 0)


@pytest.mark.parametrize("body", [{}, {"category": "false_alarm"}, {"note": "checked"},
                                  {"category": "no_such", "note": "x"}, {"category": "false_alarm", "note": ""}])
async def test_resolution_needs_a_category_and_a_note(world: World, body: dict[str, str]) -> None:
    _, alert_id, _ = await new_alert(world)
    assert (await world.client("op1").post(f"/api/alerts/{alert_id}/resolve", json=body)).status_code == 422
    assert (await alert(world, alert_id))["lifecycle"] == "open"


async def test_resolve_records_who_why_and_leaves_the_episode_to_the_pipeline(world: World) -> None:
    _, alert_id, _ = await new_alert(world)
    body = {"category": "technical_fault", "note": "strap sensor replaced"}
    async with feed(world.service, None, since=world.svc.feed.last_seq, token=world.tokens["off1"]) as officer:
        r = await world.client("off1").post(f"/api/alerts/{alert_id}/resolve", json=body)
        assert r.status_code == 200, r.text
        message = await officer.next()
        while message["id"] != alert_id:
            message = await officer.next()
    assert message["type"] == "resolved"
    a = await alert(world, alert_id)
    assert (a["lifecycle"], a["resolved_by"], a["resolution_category"], a["resolution_note"]) == (
        "resolved", f"{world.tag}-off1", "technical_fault", "strap sensor replaced")
    assert a["status"] == "open" and a["acknowledged_by"] == f"{world.tag}-off1"  # still outside the zone
    assert (await world.client("off1").post(f"/api/alerts/{alert_id}/resolve", json=body)).status_code == 409
    assert (await world.client("off1").post(f"/api/alerts/{alert_id}/ack")).status_code == 409


async def test_bulk_actions_report_per_alert(world: World) -> None:
    _, mine, _ = await new_alert(world, "o1")
    _, done_already, _ = await new_alert(world, "o1")
    _, elsewhere, _ = await new_alert(world, "o3")
    await world.client("op1").post(f"/api/alerts/{done_already}/ack")
    r = await world.client("op1").post("/api/alerts/bulk", json={"ids": [mine, done_already, elsewhere],
                                                                 "action": "acknowledge"})
    assert [(x["id"], x["result"]) for x in r.json()] == [
        (mine, "done"), (done_already, "unchanged"), (elsewhere, "not_found")]
    r = await world.client("op1").post("/api/alerts/bulk", json={"ids": [mine], "action": "resolve"})
    assert r.status_code == 422
    r = await world.client("op1").post("/api/alerts/bulk", json={
        "ids": [mine, done_already], "action": "resolve", "category": "false_alarm", "note": "drift"})
    assert [x["result"] for x in r.json()] == ["done", "done"]
    assert (await alert(world, elsewhere))["lifecycle"] == "open"


async def test_evidence_packet_has_the_fixes_the_zone_version_and_the_rule(world: World) -> None:
    subject, alert_id, _ = await new_alert(world)
    r = await world.client("op1").get(f"/api/alerts/{alert_id}/evidence")
    assert r.status_code == 200
    packet = r.json()
    (fix,) = packet["fixes"]
    assert (fix["lon"], fix["lat"], fix["acc"]) == (*OUTSIDE, 8.0)
    assert packet["zone"]["id"] == f"{subject}-home" and packet["zone"]["properties"]["version"] == 1
    assert packet["zone"]["geometry"]["coordinates"] == [COUNTY]
    assert packet["rule"]["name"] == "zone_exit"
    assert [e["type"] for e in packet["events"]] == ["alert"]
    rows = (await world.service.http.get("/api/audit", params={"action": "alert.evidence.read",
                                                               "target_id": str(alert_id)})).json()
    assert rows[0]["actor"] == f"{world.tag}-op1"
