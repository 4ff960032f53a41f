"""A feed client that reconnects with ?since= gets exactly what it missed, then live events."""

from __future__ import annotations

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
        replayed = []
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
