"""Replay a recorded trace over MQTT at K times real time, rebasing its timestamps to now."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from device_sim.protocol import Message
from device_sim.publish import MqttTarget, Publisher
from device_sim.trace import read_header, read_messages

CHUNK = 512  # messages handed to the publisher at once (it keeps their order)


def rebase_shift_ms(t0: int, t1: int, speed: float, wall0_ms: int) -> int:
    """How far to move a trace's times so no fix is ever in the future nor older than the trace.

    A message at offset t goes out at wall0 + t/speed with ts t0 + t + shift; this shift maps the
    trace's end to when its last message is sent (speed 0 = as fast as possible: the end is now).
    """
    duration = t1 - t0
    tail = duration / speed if speed > 0 else 0.0
    return int(wall0_ms + tail - t1)


def _shifted(topic: str, payload: Any, shift_ms: int) -> Message:
    if isinstance(payload, list):
        for item in payload:
            item["ts"] += shift_ms
    else:
        payload["ts"] += shift_ms
    return topic, orjson.dumps(payload)


async def replay(
    trace: Path, mqtt_url: str, speed: float = 0.0, *, rebase: bool = True, progress: bool = True
) -> int:
    """Publish every message of `trace` in file order (so per-device order is kept); returns the shift.

    `speed` K > 0 publishes K trace seconds per wall second; 0 publishes as fast as the broker takes.
    """
    header = read_header(trace)
    wall0 = time.time()
    shift = rebase_shift_ms(header["t0"], header["t1"], speed, int(wall0 * 1000)) if rebase else 0
    total = header.get("messages")
    identifier = f"emwatch-replay-{os.getpid()}-{int(wall0)}"
    bar = tqdm(total=total, unit="msg", disable=not progress, smoothing=0.1, desc=trace.name)
    async with Publisher(MqttTarget.parse(mqtt_url), identifier) as publisher:
        chunk: list[Message] = []
        for t, topic, payload in read_messages(trace):
            if speed > 0 and (delay := wall0 + t / 1000 / speed - time.time()) > 0:
                await publisher.publish_all(chunk)
                bar.update(len(chunk))
                chunk = []
                await asyncio.sleep(delay)
            chunk.append(_shifted(topic, payload, shift))
            if len(chunk) >= CHUNK:
                await publisher.publish_all(chunk)
                bar.update(len(chunk))
                chunk = []
        await publisher.publish_all(chunk)
        bar.update(len(chunk))
    bar.close()
    return shift
