"""The packed gateway batch (docs/protocol.md §1.4): same fixes as the JSON batch, bad rows alone dead-lettered."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from emwatch.ingest import packed
from emwatch.ingest.batcher import BatchBuilder
from emwatch.ingest.decode import Decoded, MessageDecoder
from emwatch.model import FixColumns

NOW = 1_790_000_000_000
TOPIC = "em/v1/gateways/g1/batch"
decoder = MessageDecoder()
GOOD: dict[str, Any] = {"dev": "dev-1", "ts": NOW, "lat": 30.5, "lon": 120.25, "acc": 8.5, "src": "wifi",
                        "batt": 87, "seq": 4711}


def pack(fixes: list[dict[str, Any]]) -> bytes:
    """The packed batch of JSON-shaped fixes (absent optional fields as their sentinels)."""
    return packed.encode_batch(
        [f["dev"] for f in fixes], [f["ts"] for f in fixes], [f["lat"] for f in fixes], [f["lon"] for f in fixes],
        acc=[f.get("acc", np.nan) for f in fixes], src=[("gps", "wifi", "lbs").index(f.get("src", "gps"))
                                                        for f in fixes],
        batt=[f.get("batt", packed.NO_BATT_BYTE) for f in fixes], seq=[f.get("seq", -(2**63)) for f in fixes])


def built(*decoded: Decoded) -> FixColumns:
    builder = BatchBuilder()
    for d in decoded:
        builder.add(d)
    return builder.build().fixes


def assert_same(a: FixColumns, b: FixColumns) -> None:
    assert a.device_ids == b.device_ids
    for name in ("ts", "lat", "lon", "acc", "src", "batt", "seq"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


def test_round_trip_equals_the_json_batch() -> None:
    fixes = [GOOD, {"dev": "dev-2", "ts": NOW - 1, "lat": -90, "lon": 180},
             {"dev": "a.b:c_d-9", "ts": NOW, "lat": 0.1, "lon": -0.2, "src": "lbs", "acc": 0, "batt": 0, "seq": 0}]
    binary = decoder.decode(TOPIC, pack(fixes), NOW)
    json = decoder.decode(TOPIC, orjson.dumps(fixes), NOW)
    assert binary.dead == [] and binary.fix_count == 3
    assert_same(built(binary), built(json))


def test_builder_keeps_arrival_order_across_json_and_packed_messages() -> None:
    first, second, third = ({**GOOD, "dev": f"dev-{k}"} for k in range(3))
    messages = [orjson.dumps([first]), pack([second]), orjson.dumps([third])]
    mixed = built(*(decoder.decode(TOPIC, m, NOW) for m in messages))
    assert mixed.device_ids == ["dev-0", "dev-1", "dev-2"]
    assert_same(mixed, built(decoder.decode(TOPIC, orjson.dumps([first, second, third]), NOW)))
    assert mixed.ts.flags.writeable  # copies, not read-only views of a message's payload


def test_empty_batch_is_valid_and_empty() -> None:
    out = decoder.decode(TOPIC, pack([]), NOW)
    assert (out.fix_count, out.dead) == (0, [])
    assert len(pack([])) == packed.HEADER.size


@pytest.mark.parametrize(("change", "reason"), [
    ({"dev": ""}, "device id of 0 bytes"),
    ({"dev": "x" * 129}, "device id of 129 bytes"),
    ({"dev": "dev 1"}, "device id"),
    ({"dev": "dev/1"}, "device id"),
    ({"dev": "dév"}, "device id"),
    ({"ts": -1}, "ts -1 not in"),
    ({"ts": 2**53 + 1}, "not in 0..2^53"),
    ({"lat": 90.5}, "lat 90.5"),
    ({"lat": float("nan")}, "lat nan"),
    ({"lon": -180.01}, "lon -180.01"),
    ({"lon": float("inf")}, "lon inf"),
    ({"acc": -1.0}, "acc -1.0"),
    ({"acc": float("inf")}, "acc inf"),
    ({"acc": 2e7}, "acc 2"),
    ({"src": "sat"}, "src code 3"),
    ({"batt": 101}, "batt 101"),
    ({"seq": -5}, "seq -5 is negative"),
    ({"ts": NOW + 301_000}, "in the future"),
    ({"ts": NOW - 8 * 86_400_000}, "older than"),
])
def test_bad_row_is_dead_lettered_alone(change: dict[str, Any], reason: str) -> None:
    bad = {**GOOD, "dev": "bad", **change}
    if bad["src"] == "sat":
        payload = bytearray(pack([GOOD, {**bad, "src": "gps"}, {**GOOD, "dev": "dev-3"}]))
        payload[packed.HEADER.size + 36 * 3 + 1] = 3  # the second row's src byte
        payload_bytes = bytes(payload)
    else:
        payload_bytes = pack([GOOD, bad, {**GOOD, "dev": "dev-3"}])
    out = decoder.decode(TOPIC, payload_bytes, NOW)
    assert out.fix_count == 2 and built(out).device_ids == ["dev-1", "dev-3"]
    assert len(out.dead) == 1 and reason in out.dead[0].reason, out.dead
    if "in the future" not in reason and "older than" not in reason:
        assert "invalid fix at index 1" in out.dead[0].reason
    evidence = packed.unpack(out.dead[0].payload)  # the row alone, byte for byte
    assert len(evidence) == 1 and evidence.ts.tobytes() == packed.unpack(payload_bytes).ts[1:2].tobytes()


def test_batch_of_only_bad_rows_has_no_fixes() -> None:
    out = decoder.decode(TOPIC, pack([{**GOOD, "lat": 99.0}, {**GOOD, "batt": 150}]), NOW)
    assert (out.fix_count, out.columns, len(out.dead)) == (0, [], 2)


def _header(payload: bytes, **fields: int) -> bytes:
    magic, version, flags, reserved, count, id_bytes = packed.HEADER.unpack_from(payload)
    values = {"version": version, "flags": flags, "reserved": reserved, "count": count, "id_bytes": id_bytes}
    values.update(fields)
    return packed.HEADER.pack(magic, *values.values()) + payload[packed.HEADER.size:]


TWO = pack([GOOD, {**GOOD, "dev": "dev-2"}])


@pytest.mark.parametrize(("payload", "reason"), [
    (b"EMPB", "shorter than the 16-byte header"),
    (b"EMPB\x01\x00\x00\x00\x01\x00", "shorter than"),
    (TWO[:-1], f"got {len(TWO) - 1}"),
    (TWO[:40], "got 40"),
    (TWO + b"\x00", f"got {len(TWO) + 1}"),
    (_header(TWO, version=2), "layout version 2"),
    (_header(TWO, flags=1), "flags 1"),
    (_header(TWO, reserved=7), "reserved 7"),
    (_header(TWO, count=3), "header says 3 rows"),
    (_header(TWO, count=1), "header says 1 rows"),
    (_header(TWO, count=2**32 - 1), "header says 4294967295 rows"),
    (_header(TWO, id_bytes=2**32 - 1), "4294967295 id bytes"),
    (TWO.replace(b"dev-1\ndev-2", b"dev-1:dev-2"), "holds 1 device ids for 2 rows"),
    (TWO.replace(b"dev-1\ndev-2", b"dev\n1\ndev-2"), "holds 3 device ids for 2 rows"),
    (packed.HEADER.pack(packed.MAGIC, 1, 0, 0, 0, 3) + b"abc", "holds 1 device ids for 0 rows"),
])
def test_malformed_payload_is_one_dead_letter_with_the_whole_payload(payload: bytes, reason: str) -> None:
    out = decoder.decode(TOPIC, payload, NOW)
    assert out.fix_count == 0 and len(out.dead) == 1
    assert "invalid gateway batch" in out.dead[0].reason and reason in out.dead[0].reason, out.dead[0].reason
    assert out.dead[0].payload == payload


def test_huge_count_is_rejected_from_the_header_alone() -> None:
    # 2^32-1 rows would be 160 GB of columns; the size check comes before any array is made.
    payload = struct.pack("<4sBBHII", b"EMPB", 1, 0, 0, 2**32 - 1, 0)
    out = decoder.decode(TOPIC, payload, NOW)
    assert len(out.dead) == 1 and "header says 4294967295 rows" in out.dead[0].reason


def test_magic_routes_only_packed_payloads() -> None:
    out = decoder.decode(TOPIC, b"EMPX" + TWO[4:], NOW)  # not the magic: read as JSON, which it is not
    assert len(out.dead) == 1 and "invalid gateway batch" in out.dead[0].reason
    assert decoder.decode("em/v1/devices/d1/fix", TWO, NOW).dead[0].reason.startswith("invalid fix")


def test_layout_matches_the_documented_offsets() -> None:
    payload = pack([{**GOOD, "dev": "ab"}, {**GOOD, "dev": "c", "ts": NOW + 1, "batt": 5}])
    n, m = 2, 4
    assert len(payload) == 16 + 38 * n + m
    assert payload[:8] == b"EMPB\x01\x00\x00\x00" and struct.unpack_from("<II", payload, 8) == (n, m)
    assert struct.unpack_from("<2q", payload, 16) == (NOW, NOW + 1)
    assert struct.unpack_from("<2d", payload, 16 + 8 * n) == (30.5, 30.5)
    assert struct.unpack_from("<2d", payload, 16 + 16 * n) == (120.25, 120.25)
    assert struct.unpack_from("<2q", payload, 16 + 24 * n) == (4711, 4711)
    assert struct.unpack_from("<2f", payload, 16 + 32 * n) == (8.5, 8.5)
    assert payload[16 + 36 * n: 16 + 38 * n] == bytes([1, 1, 87, 5])
    assert payload[16 + 38 * n:] == b"ab\nc"


def test_encoder_refuses_what_the_layout_cannot_carry() -> None:
    with pytest.raises(ValueError, match="newline"):
        packed.encode_batch(["a\nb"], [NOW], [1.0], [2.0])
    with pytest.raises(ValueError, match="lat has"):
        packed.encode_batch(["a", "b"], [NOW, NOW], [1.0], [2.0, 3.0])
