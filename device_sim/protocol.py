"""Wire protocol v1 encoding (docs/protocol.md): topics and JSON payloads for fixes and batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from device_sim.reporting import EVENT_TYPES, SOURCES, Events, Fixes, Report
from device_sim.world import World

TOPIC_PREFIX = "em/v1"
Message = tuple[str, bytes]  # (topic, payload)


def fix_topic(device_id: str, prefix: str = TOPIC_PREFIX) -> str:
    """Topic of a single fix from one device."""
    return f"{prefix}/devices/{device_id}/fix"


def batch_topic(gateway_id: str, prefix: str = TOPIC_PREFIX) -> str:
    """Topic of a gateway batch (a JSON array of fixes, each naming its device in `dev`)."""
    return f"{prefix}/gateways/{gateway_id}/batch"


def event_topic(device_id: str, prefix: str = TOPIC_PREFIX) -> str:
    """Topic of a device event (strap_open, heartbeat, ...)."""
    return f"{prefix}/devices/{device_id}/event"


def fix_objects(fixes: Fixes) -> list[dict[str, Any]]:
    """The protocol's fix objects, in `fixes` order: plain ints/floats/strs ready for JSON."""
    # Six decimals is ~0.1 m: finer than any fix, and keeps each message near 100 bytes.
    columns = zip(
        fixes.ts.tolist(),
        np.round(fixes.lat, 6).tolist(),
        np.round(fixes.lon, 6).tolist(),
        fixes.acc.tolist(),
        fixes.src.tolist(),
        fixes.batt.tolist(),
        fixes.seq.tolist(),
        strict=True,
    )
    return [
        {"ts": ts, "lat": lat, "lon": lon, "acc": acc, "src": SOURCES[src], "batt": batt, "seq": seq}
        for ts, lat, lon, acc, src, batt, seq in columns
    ]


def encode_messages(fixes: Fixes, world: World, batch: int = 1, prefix: str = TOPIC_PREFIX) -> list[Message]:
    """MQTT messages for `fixes`: one per fix, or with batch > 1 per-gateway arrays of up to `batch` fixes."""
    objects = fix_objects(fixes)
    device_ids = world.devices.ids
    index = fixes.device_index.tolist()
    if batch <= 1:
        return [
            (fix_topic(device_ids[d], prefix), orjson.dumps(o)) for d, o in zip(index, objects, strict=True)
        ]
    by_gateway: dict[str, list[dict[str, Any]]] = {}
    for d, o in zip(index, objects, strict=True):
        by_gateway.setdefault(world.devices.gateway_ids[d], []).append({"dev": device_ids[d], **o})
    return [
        (batch_topic(gateway, prefix), orjson.dumps(items[i : i + batch]))
        for gateway, items in by_gateway.items()
        for i in range(0, len(items), batch)
    ]


def encode_events(events: Events, world: World, prefix: str = TOPIC_PREFIX) -> list[Message]:
    """One message per device event on the device's event topic: `{"ts", "type", "batt"}`."""
    ids = world.devices.ids
    return [
        (event_topic(ids[d], prefix), orjson.dumps({"ts": ts, "type": EVENT_TYPES[k], "batt": batt}))
        for d, ts, k, batt in zip(
            events.device_index.tolist(), events.ts.tolist(), events.type.tolist(), events.batt.tolist(),
            strict=True,
        )
    ]


def encode_report(report: Report, world: World, batch: int = 1, prefix: str = TOPIC_PREFIX) -> list[Message]:
    """A step's messages: events first (they are rare and urgent), then the fixes."""
    events = encode_events(report.events, world, prefix)
    return [*events, *encode_messages(report.fixes, world, batch, prefix)]
