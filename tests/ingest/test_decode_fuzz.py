"""Fuzzing the wire-protocol decoder: whatever arrives, nothing escapes, nothing is lost, every rejection says why.

Structured inputs are checked against a small reference reading of docs/protocol.md (`reference_reason`);
arbitrary and mutated bytes are checked for the invariants alone. `benchmarks/fuzz_decode.py` runs
the same invariants over a million payloads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emwatch.ingest.decode import Decoded, MessageDecoder

NOW = 1_790_000_000_000
LIMIT = 4096
decoder = MessageDecoder(max_payload_bytes=LIMIT)
roomy = MessageDecoder()  # 1 MiB: structured inputs are judged on content, not size
CI = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The phrases docs/protocol.md §2 promises monitoring (the decoder's part: "unknown device" comes later).
REASONS = ("over limit", "unknown topic", "invalid fix", "invalid gateway batch", "invalid event",
           "in the future", "older than")
FIX_TOPIC, BATCH_TOPIC, EVENT_TOPIC = "em/v1/devices/d1/fix", "em/v1/gateways/g1/batch", "em/v1/devices/d1/event"
EVENT_TYPES = ("strap_open", "strap_closed", "case_open", "battery_low", "charging", "heartbeat",
               "companion_lost", "companion_ok")
DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def check_invariants(topic: str, payload: bytes, out: Decoded) -> None:
    """What holds for every input: one outcome per message (per element for batches), reasons named."""
    for dead in out.dead:
        assert dead.topic == topic
        assert any(phrase in dead.reason for phrase in REASONS), dead.reason
        if "over limit" in dead.reason:  # rejected unparsed, only the start kept as evidence
            assert dead.payload == payload[:4096]
    if topic != BATCH_TOPIC:
        assert len(out.fixes) + len(out.events) + len(out.dead) == 1, out
        return
    assert out.events == []
    if any("invalid gateway batch" in d.reason or "over limit" in d.reason for d in out.dead):
        assert out.fixes == [] and len(out.dead) == 1
    else:  # a JSON array: each element is a fix or a dead letter of its own
        elements = msgspec.json.decode(payload, type=list[msgspec.Raw])
        assert len(out.fixes) + len(out.dead) == len(elements)


# -- a reference reading of the protocol, slow and obvious ------------------------------------------

def _number(v: Any, lo: float, hi: float) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi  # JSON has no NaN/inf


def _integer(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _time_ok(ts: int) -> bool:
    return NOW - 7 * 86_400_000 <= ts <= NOW + 300_000


def reference_fix_ok(obj: Any, *, gateway: bool) -> bool:
    """Whether docs/protocol.md §1.1/§1.2 (plus the time window) accept this decoded JSON value as a fix."""
    if not isinstance(obj, dict):
        return False
    if gateway and not (isinstance(obj.get("dev"), str) and DEVICE_ID.fullmatch(obj["dev"])):
        return False
    optional = [("acc", lambda v: _number(v, 0, 1e7)), ("batt", lambda v: _integer(v, 0, 100)),
                ("seq", lambda v: _integer(v, 0, 2**63 - 1))]
    return (
        _integer(obj.get("ts"), 0, 2**53) and _time_ok(obj["ts"])
        and _number(obj.get("lat"), -90, 90) and _number(obj.get("lon"), -180, 180)
        and all(obj.get(k) is None or ok(obj[k]) for k, ok in optional)
        and obj.get("src", "gps") in ("gps", "wifi", "lbs")
    )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def reference_event_ok(obj: Any) -> bool:
    """§1.3: an object with an in-window integer `ts` and a known `type`, storable as jsonb (no NUL)."""
    return (isinstance(obj, dict) and _integer(obj.get("ts"), 0, 2**53) and _time_ok(obj["ts"])
            and obj.get("type") in EVENT_TYPES and not any("\x00" in s for s in _strings(obj)))


# -- strategies --------------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
timestamps = st.integers(NOW - 8 * 86_400_000, NOW + 600_000) | st.integers(-(2**70), 2**70)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all (wrong type, null, nested)."""
    return st.one_of(valid, valid, valid, anything)


fix_fields = {
    "ts": field(timestamps),
    "lat": field(st.floats(-95, 95) | st.integers(-100, 100)),
    "lon": field(st.floats(-185, 185) | st.integers(-200, 200)),
    "acc": field(st.floats(-1, 2e7)),
    "src": field(st.sampled_from(["gps", "wifi", "lbs", "radio", ""])),
    "batt": field(st.integers(-5, 105)),
    "seq": field(st.integers(-1, 2**64)),
    "dev": field(st.from_regex(DEVICE_ID, fullmatch=True) | st.sampled_from(["", "a/b", "a\x00b", "x" * 129])),
    "hdop": anything,
}


@st.composite
def fix_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Fix-like objects: each field present or not, valid or not, plus vendor extensions."""
    keys = draw(st.sets(st.sampled_from(sorted(fix_fields)))) | draw(st.sets(st.sampled_from(["ts", "lat", "lon"])))
    return {k: draw(fix_fields[k]) for k in sorted(keys)}


event_objects = st.fixed_dictionaries(
    {"ts": field(timestamps), "type": field(st.sampled_from([*EVENT_TYPES, "teleported"]))},
    optional={"batt": anything, "detail": st.text(max_size=8), "x": anything},
)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A payload with a few bytes flipped, dropped or inserted: the malformed JSON devices really send."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op, at = draw(st.sampled_from(["flip", "drop", "insert", "cut"])), draw(st.integers(0, len(data)))
        byte = draw(st.integers(0, 255))
        if op == "flip" and at < len(data):
            data[at] = byte
        elif op == "drop" and at < len(data):
            del data[at]
        elif op == "insert":
            data.insert(at, byte)
        elif op == "cut":
            del data[at:]
    return bytes(data)


topics = st.sampled_from([FIX_TOPIC, BATCH_TOPIC, EVENT_TOPIC, "em/v1/devices/d1/fixes", "em/v1/devices//fix",
                          "em/v1/gateways/g1/batch/x", "em/v2/devices/d1/fix", "", "/", "em/v1"]) | st.text(max_size=30)
payloads = st.one_of(
    st.binary(max_size=64),
    fix_objects().map(encode),
    st.lists(fix_objects(), max_size=5).map(encode),
    event_objects.map(encode),
    mutated(fix_objects().map(encode) | st.lists(fix_objects(), max_size=3).map(encode)),
    anything.map(encode),
    st.integers(900, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(LIMIT - 2, LIMIT + 2).map(lambda n: b" " * n),
)


# -- properties -----------------------------------------------------------------------------------------

@CI
@given(topic=topics, payload=payloads)
def test_any_topic_and_payload_gives_one_outcome_with_a_reason(topic: str, payload: bytes) -> None:
    check_invariants(topic, payload, decoder.decode(topic, payload, NOW))


@CI
@given(obj=fix_objects())
def test_single_fix_is_accepted_exactly_when_the_protocol_says_so(obj: dict[str, Any]) -> None:
    payload = encode(obj)
    out = roomy.decode(FIX_TOPIC, payload, NOW)
    check_invariants(FIX_TOPIC, payload, out)
    ok = reference_fix_ok(obj, gateway=False)
    assert (len(out.fixes), len(out.dead)) == ((1, 0) if ok else (0, 1)), (obj, out.dead)
    if ok:
        device, fix = out.fixes[0]
        assert (device, fix.ts, fix.lat, fix.lon) == ("d1", obj["ts"], obj["lat"], obj["lon"])


@settings(CI, max_examples=150)  # each example is a whole batch of generated objects
@given(elements=st.lists(fix_objects(), max_size=6))
def test_gateway_batch_keeps_every_good_element_and_dead_letters_each_bad_one(elements: list[dict[str, Any]]) -> None:
    payload = encode(elements)
    out = roomy.decode(BATCH_TOPIC, payload, NOW)
    check_invariants(BATCH_TOPIC, payload, out)
    good = [e for e in elements if reference_fix_ok(e, gateway=True)]
    assert [(d, f.ts, f.lat, f.lon) for d, f in out.fixes] == [(e["dev"], e["ts"], e["lat"], e["lon"]) for e in good]
    assert len(out.dead) == len(elements) - len(good)


@CI
@given(obj=event_objects)
def test_event_is_accepted_exactly_when_the_protocol_says_so(obj: dict[str, Any]) -> None:
    payload = encode(obj)
    out = roomy.decode(EVENT_TOPIC, payload, NOW)
    check_invariants(EVENT_TOPIC, payload, out)
    assert len(out.events) == int(reference_event_ok(obj)), (obj, out.dead)


@CI
@given(payload=mutated(fix_objects().map(encode)))
def test_mutated_fix_never_escapes(payload: bytes) -> None:
    check_invariants(FIX_TOPIC, payload, decoder.decode(FIX_TOPIC, payload, NOW))


# -- regressions found by the fuzzer -------------------------------------------------------------------

DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    # msgspec raises RecursionError, not DecodeError, on deep nesting, even inside an ignored field.
    (FIX_TOPIC, b'{"ts": %d, "lat": 1, "lon": 2, "vendor": %s}' % (NOW, DEEP), "invalid fix"),
    (EVENT_TOPIC, b'{"ts": %d, "type": "heartbeat", "x": %s}' % (NOW, DEEP), "invalid event"),
    (BATCH_TOPIC, b"[%s]" % DEEP, "invalid gateway batch"),
    # PostgreSQL jsonb cannot hold U+0000: storing this event failed the whole batch's transaction.
    (EVENT_TOPIC, b'{"ts": %d, "type": "heartbeat", "note": "a\\u0000b"}' % NOW, "invalid event"),
    (EVENT_TOPIC, b'{"ts": %d, "type": "heartbeat", "n": [{"k\\u0000": 1}]}' % NOW, "invalid event"),
    # A NUL device id failed the registry lookup; an id the API cannot register can never be known.
    (BATCH_TOPIC, b'[{"dev": "a\\u0000", "ts": %d, "lat": 1, "lon": 2}]' % NOW, "invalid fix at index 0"),
    (BATCH_TOPIC, b'[{"dev": "a/b", "ts": %d, "lat": 1, "lon": 2}]' % NOW, "invalid fix at index 0"),
])
def test_fuzzer_findings_are_dead_letters(topic: str, payload: bytes, reason: str) -> None:
    out = roomy.decode(topic, payload, NOW)
    assert out.fixes == [] and out.events == []
    assert len(out.dead) == 1 and reason in out.dead[0].reason, out.dead


def test_literal_backslash_u0000_text_is_not_a_nul() -> None:
    payload = b'{"ts": %d, "type": "heartbeat", "note": "C:\\\\u0000"}' % NOW
    assert len(decoder.decode(EVENT_TOPIC, payload, NOW).events) == 1
