"""A feed client that reconnects with ?since= gets exactly what it missed, then live events."""

from __future__ import annotations

from typing import Any

import asyncpg
import websockets

from tests.e2e.conftest import INSIDE, OUTSIDE, Service, feed, now_ms


async def test_resume_replays_exactly_the_missed_events_then_goes_live(service: Service) -> None:
    subject, device = await service.add_subject()
    t0 = now_ms()
    async with feed(service, subject) as client:
        await service.publish_fix(device, *OUTSIDE, ts=t0)
        seen = await client.next()
    # Disconnected: the subject comes back, leaves and comes back again.
    for i, position in enumerate([INSIDE, OUTSIDE, INSIDE], start=1):
        await service.publish_fix(device, *position, ts=t0 + i * 1000)
    await service.drain()

    async with feed(service, None, since=seen["seq"]) as client:
        replayed: list[dict[str, Any]] = []
        while len([m for m in replayed if m["subject_id"] == subject]) < 3:
            replayed.append(await client.next())
        mine = [m for m in replayed if m["subject_id"] == subject]
        assert [m["type"] for m in mine] == ["cleared", "alert", "cleared"]
        assert [m["ts"] for m in mine] == [t0 + 1000, t0 + 2000, t0 + 3000]
        seqs = [m["seq"] for m in replayed]
        assert seqs == sorted(set(seqs)) and seqs[0] == seen["seq"] + 1  # contiguous, no duplicate

        await service.publish_fix(device, *OUTSIDE, ts=t0 + 4000)  # live after replay
        live = await client.next()
        while live["subject_id"] != subject:
            live = await client.next()
        assert (live["type"], live["ts"], live["seq"]) == ("alert", t0 + 4000, max(seqs) + 1)
        await client.expect_silence()


async def test_bad_since_is_refused(service: Service) -> None:
    async with websockets.connect(service.ws_url + "?since=-1") as ws:
        try:
            await ws.recv()
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008
        else:
            raise AssertionError("server kept the connection open")


async def test_resume_replays_alerts_published_but_not_yet_committed(service: Service) -> None:
    subject, device = await service.add_subject()
    await service.publish_fix(device, *INSIDE)
    await service.drain()
    blocker = await asyncpg.connect(service.pipeline.settings.database_url)
    try:
        async with feed(service, subject) as live:
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("LOCK TABLE fixes IN ACCESS EXCLUSIVE MODE")  # the commit must wait
            ts = await service.publish_fix(device, *OUTSIDE)
            alert = await live.next()  # published from memory
            assert await blocker.fetchval("SELECT count(*) FROM alert_events WHERE seq = $1", alert["seq"]) == 0
            async with feed(service, subject, since=alert["seq"] - 1) as resumed:
                assert await resumed.next() == alert  # from the pending buffer
                await resumed.expect_silence()
            await lock.rollback()
        await service.drain()
        async with feed(service, subject, since=alert["seq"] - 1) as resumed:
            assert (await resumed.next())["seq"] == alert["seq"]  # from the database now, once
            await resumed.expect_silence()
        assert alert["ts"] == ts
    finally:
        await blocker.close()


async def test_acknowledgement_takes_the_next_feed_seq_and_is_stored_under_it(service: Service) -> None:
    subject, device = await service.add_subject()
    await service.publish_fix(device, *INSIDE)
    async with feed(service, subject) as live:
        await service.publish_fix(device, *OUTSIDE)
        alert = await live.next()
        await service.drain()
        r = await service.http.post(f"/api/alerts/{alert['id']}/ack")
        assert r.status_code == 200, r.text
        ack = await live.next()
        assert ack == r.json() and ack["type"] == "acknowledged" and ack["seq"] > alert["seq"]
    await service.drain()
    async with feed(service, subject, since=alert["seq"] - 1) as resumed:
        assert [(await resumed.next())["seq"] for _ in range(2)] == [alert["seq"], ack["seq"]]


async def test_a_live_client_gets_every_event_published_once_it_is_connected(service: Service) -> None:
    """No ?since=: the stream starts when the connection opens. Recording the connection (an audit row)
    happens after the subscription, so an event published meanwhile still reaches the client."""
    subject, device = await service.add_subject()
    await service.publish_fix(device, *INSIDE)
    await service.drain()
    blocker = await asyncpg.connect(service.pipeline.settings.database_url)
    try:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")  # the feed's audit row waits
        async with feed(service, subject) as client:
            await service.publish_fix(device, *OUTSIDE)
            await service.drain()
            await lock.rollback()
            message = await client.next()
            assert (message["subject_id"], message["type"]) == (subject, "alert")
    finally:
        await blocker.close()
