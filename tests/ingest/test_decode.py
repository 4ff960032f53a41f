"""Wire protocol v1 decoding: every message becomes fixes, an event, or dead letters with a reason."""

from __future__ import annotations

import pytest

from emwatch.ingest.decode import MessageDecoder

NOW = 1_790_000_000_000
decoder = MessageDecoder(max_payload_bytes=1000)


@pytest.mark.parametrize(("topic", "payload", "fixes", "reason"), [
    ("em/v1/devices/d1/fix", b'{"ts": %d, "lat": 30.1, "lon": 120.2}' % NOW, 1, None),
    ("em/v1/devices/d1/fix", b'{"ts": %d, "lat": 30.1, "lon": 120.2, "future_field": 1}' % NOW, 1, None),
    ("em/v1/devices/d1/fix", b'{"ts": %d, "lat": 30.1}' % NOW, 0, "missing required field `lon`"),
    ("em/v1/devices/d1/fix", b'{"ts": %d, "lat": 30.1, "lon": 120.2, "src": "radio"}' % NOW, 0, "Invalid enum"),
    ("em/v1/devices/d1/fix", b'{"ts": %d, "lat": 30.1, "lon": 120.2, "batt": 101}' % NOW, 0, "<= 100"),
    ("em/v1/devices/d1/fix", b'{"ts": %d, "lat": 30.1, "lon": 120.2}' % (NOW + 301_000), 0, "in the future"),
    ("em/v1/devices/d1/fix", b'{"ts": %d, "lat": 30.1, "lon": 120.2}' % (NOW - 8 * 86_400_000), 0, "older than"),
    ("em/v1/devices/d1/fix", b"\xff\xfe", 0, "invalid fix"),
    ("em/v1/devices/d1/fix", b"x" * 1001, 0, "over limit"),
    ("em/v1/devices/d1/position", b"{}", 0, "unknown topic"),
    ("other/v1/devices/d1/fix", b"{}", 0, "unknown topic"),
    ("em/v1/devices//fix", b"{}", 0, "unknown topic"),
])
def test_single_fix(topic: str, payload: bytes, fixes: int, reason: str | None) -> None:
    out = decoder.decode(topic, payload, NOW)
    assert len(out.fixes) == fixes
    if reason is None:
        assert out.dead == []
        assert out.fixes[0][0] == "d1"
    else:
        assert len(out.dead) == 1 and reason in out.dead[0].reason
        assert out.dead[0].topic == topic


def test_gateway_batch_isolates_bad_elements() -> None:
    payload = b'[{"dev": "a", "ts": %d, "lat": 1, "lon": 2}, {"dev": "b", "ts": %d, "lat": "x", "lon": 2},' \
              b' {"dev": "c", "ts": %d, "lat": 3, "lon": 4}]' % (NOW, NOW, NOW)
    out = decoder.decode("em/v1/gateways/g1/batch", payload, NOW)
    assert [(d, f.lat) for d, f in out.fixes] == [("a", 1.0), ("c", 3.0)]
    assert len(out.dead) == 1
    assert out.dead[0].payload == b'{"dev": "b", "ts": %d, "lat": "x", "lon": 2}' % NOW
    assert "index 1" in out.dead[0].reason


def test_gateway_batch_that_is_not_a_list_is_one_dead_letter() -> None:
    out = decoder.decode("em/v1/gateways/g1/batch", b'{"dev": "a"}', NOW)
    assert out.fixes == [] and len(out.dead) == 1 and "invalid gateway batch" in out.dead[0].reason


@pytest.mark.parametrize(("payload", "ok"), [
    (b'{"ts": %d, "type": "strap_open", "detail": "cut"}' % NOW, True),
    (b'{"ts": %d, "type": "teleported"}' % NOW, False),
    (b'{"type": "heartbeat"}', False),
])
def test_device_event(payload: bytes, ok: bool) -> None:
    out = decoder.decode("em/v1/devices/d9/event", payload, NOW)
    assert (len(out.events), len(out.dead)) == ((1, 0) if ok else (0, 1))
    if ok:
        device, event, raw = out.events[0]
        assert (device, event.type, raw) == ("d9", "strap_open", payload)


@pytest.mark.parametrize("bad_id", ["a b", "a\\nb", "é", "x/y"])
def test_gateway_batch_rejects_a_device_id_outside_the_alphabet_and_keeps_the_others(bad_id: str) -> None:
    # the fast path checks all ids of a batch at once; a bad one sends the batch element by element
    payload = (b'[{"dev": "a", "ts": %d, "lat": 1, "lon": 2}, {"dev": "%s", "ts": %d, "lat": 1, "lon": 2}]'
               % (NOW, bad_id.encode(), NOW))
    out = decoder.decode("em/v1/gateways/g1/batch", payload, NOW)
    assert [d for d, _ in out.fixes] == ["a"]
    assert len(out.dead) == 1 and "index 1" in out.dead[0].reason and "regex" in out.dead[0].reason
