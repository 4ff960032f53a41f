"""Replay a recorded trace over MQTT at K times real time, rebasing its timestamps to now."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from device_sim.protocol import Message
from device_sim.publish import MqttTarget, Publisher
from device_sim.trace import read_header, read_messages

CHUNK = 512  # messages handed to the publisher at once (it keeps their order)
MINUTE_MS = 60_000
Clock = Callable[[int], Awaitable[None]]  # called with an event time (epoch ms) all earlier messages reached


def rebase_shift_ms(t0: int, t1: int, speed: float, wall0_ms: int) -> int:
    """How far to move a trace's times so no fix is ever in the future nor older than the trace.

    A message at offset t goes out at wall0 + t/speed with ts t0 + t + shift; this shift maps the
    trace's end to when its last message is sent (speed 0 = as fast as possible: the end is now).
    Rounded down to whole minutes, so daily schedules (curfews, `HH:MM`) move with the trace exactly.
    """
    duration = t1 - t0
    tail = duration / speed if speed > 0 else 0.0
    return int(wall0_ms + tail - t1) // MINUTE_MS * MINUTE_MS


def _shifted(topic: str, payload: Any, shift_ms: int) -> Message:
    if isinstance(payload, list):
        for item in payload:
            item["ts"] += shift_ms
    else:
        payload["ts"] += shift_ms
    return topic, orjson.dumps(payload)


async def replay(
    trace: Path,
    mqtt_url: str,
    speed: float = 0.0,
    *,
    rebase: bool = True,
    progress: bool = True,
    shift_ms: int | None = None,
    clock: Clock | None = None,
    clock_step_ms: int = 30_000,
) -> int:
    """Publish every message of `trace` in file order (so per-device order is kept); returns the shift.

    `speed` K > 0 publishes K trace seconds per wall second; 0 publishes as fast as the broker takes.
    `shift_ms` (default `rebase_shift_ms` now) is added to every `ts`; give it when orders were set up
    with it. `clock`, if given, is awaited every `clock_step_ms` of trace time with that event time
    (shifted), after every earlier message was published: a test drives the service's timer rules
    from it so that they see the trace's time, not the wall clock's.
    """
    header = read_header(trace)
    wall0 = time.time()
    if shift_ms is None:
        shift_ms = rebase_shift_ms(header["t0"], header["t1"], speed, int(wall0 * 1000)) if rebase else 0
    shift, t0 = shift_ms, int(header["t0"])
    next_tick = clock_step_ms
    identifier = f"emwatch-replay-{os.getpid()}-{int(wall0)}"
    bar = tqdm(total=header.get("messages"), unit="msg", disable=not progress, smoothing=0.1, desc=trace.name)
    async with Publisher(MqttTarget.parse(mqtt_url), identifier) as publisher:
        chunk: list[Message] = []

        async def flush() -> None:
            nonlocal chunk
            await publisher.publish_all(chunk)
            bar.update(len(chunk))
            chunk = []

        for t, topic, payload in read_messages(trace):
            if clock is not None and t >= next_tick:
                await flush()
                while t >= next_tick:
                    await clock(t0 + next_tick + shift)
                    next_tick += clock_step_ms
            if speed > 0 and (delay := wall0 + t / 1000 / speed - time.time()) > 0:
                await flush()
                await asyncio.sleep(delay)
            chunk.append(_shifted(topic, payload, shift))
            if len(chunk) >= CHUNK:
                await flush()
        await flush()
        if clock is not None:
            while next_tick <= int(header["t1"]) - t0:
                await clock(t0 + next_tick + shift)
                next_tick += clock_step_ms
    bar.close()
    return shift
