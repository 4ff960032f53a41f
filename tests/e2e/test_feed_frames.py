"""`?frames=batch`: the feed sends the events that are ready together as one JSON array per message,
the same events in the same seq order as one-event messages, live and on replay."""

from __future__ import annotations

from typing import Any

import orjson
import websockets

from tests.e2e.conftest import INSIDE, OUTSIDE, Service, feed, now_ms


async def _gateway_batch(service: Service, devices: list[str], ts: int) -> None:
    fixes = [{"dev": d, "ts": ts, "lat": OUTSIDE[1], "lon": OUTSIDE[0], "acc": 8.0} for d in devices]
    await service.publish_raw("em/v1/gateways/gw-frames/batch", orjson.dumps(fixes))


async def test_alerts_raised_together_arrive_in_one_array_with_the_events_single_frames_carry(
    service: Service,
) -> None:
    pairs = [await service.add_subject() for _ in range(4)]
    subjects = {s for s, _ in pairs}
    async with feed(service, None) as single, feed(service, None, frames="batch") as batched:
        await _gateway_batch(service, [d for _, d in pairs], now_ms())
        one_each = [await single.next() for _ in range(4)]
        arrays = [await batched.next() for _ in range(4)]
        assert {e["subject_id"] for e in one_each} == subjects
        assert arrays == one_each  # same events, same seq order, same wire shape
        assert [e["seq"] for e in arrays] == sorted(e["seq"] for e in arrays)
        assert set(single.frames) == {1}
        assert batched.frames == [4]  # one evaluation's alerts: one message
        await batched.expect_silence()


async def test_replay_with_batch_frames_sends_what_was_missed_as_arrays_then_goes_live(service: Service) -> None:
    pairs = [await service.add_subject() for _ in range(3)]
    async with feed(service, None) as watcher:
        await _gateway_batch(service, [d for _, d in pairs], now_ms())
        missed = [await watcher.next() for _ in range(3)]
    await service.drain()
    async with feed(service, None, since=missed[0]["seq"] - 1, frames="batch") as resumed:
        replayed: list[dict[str, Any]] = [await resumed.next() for _ in range(3)]
        assert replayed == missed
        assert resumed.frames[0] >= 3  # the replay page came as one array
        subject, device = pairs[0]
        await service.publish_fix(device, *INSIDE)  # live after the replay
        live = await resumed.next()
        assert (live["type"], live["subject_id"], live["seq"]) == ("cleared", subject, missed[-1]["seq"] + 1)
        assert resumed.frames[-1] == 1
        await resumed.expect_silence()


async def test_unknown_frames_value_is_refused_with_a_reason(service: Service) -> None:
    protocols = [websockets.Subprotocol("bearer"), websockets.Subprotocol(service.token)]
    async with websockets.connect(service.ws_url + "?frames=xml", subprotocols=protocols) as ws:
        try:
            await ws.recv()
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None
            assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "frames must be 'single' or 'batch'")
        else:
            raise AssertionError("server kept the connection open")
