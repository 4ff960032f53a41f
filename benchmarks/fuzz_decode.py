"""Fuzz the wire-protocol decoder with a million payloads and show that memory stays flat.

Every payload is checked with the invariants of tests/ingest/test_decode_fuzz.py: nothing escapes,
one outcome per message (per element for a gateway batch), every dead letter names a documented reason.
Packed (binary) gateway batches, plausible and mutated, are also checked against a slow reading of
docs/protocol.md §1.4 (`packed_reference`): every valid row is accepted, in order, and only those.

Run: .venv/bin/python benchmarks/fuzz_decode.py [--runs 1000000] [--engine random|atheris] [--seed 1]
`atheris` (pip install atheris) is coverage-guided; `random` is a seeded structured generator.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import re
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from emwatch.ingest.decode import Decoded, MessageDecoder
from emwatch.ingest.packed import MAGIC, encode_batch

NOW = 1_790_000_000_000
LIMIT = 65_536
REASONS = ("over limit", "unknown topic", "invalid fix", "invalid gateway batch", "invalid event",
           "in the future", "older than")
TOPICS = ("em/v1/devices/d1/fix", "em/v1/gateways/g1/batch", "em/v1/devices/d1/event")
ODD_TOPICS = ("em/v1/devices/d1/fixes", "em/v1/devices//fix", "em/v2/devices/d1/fix", "",
              "em/v1/gateways/g/batch/x")
EVENT_TYPES = ("strap_open", "heartbeat", "battery_low", "teleported", "")
SAMPLES = 20  # memory checkpoints per run
decoder = MessageDecoder(max_payload_bytes=LIMIT)


class InvariantBroken(AssertionError):
    """The decoder did something the protocol does not allow for this input."""


def packed_reference(payload: bytes) -> list[str] | None:
    """Device ids of the rows a packed batch must yield, in order; None when the whole payload is malformed.

    Deliberately slow and literal: one struct read per field, the limits as docs/protocol.md states them."""
    if len(payload) < 16:
        return None
    magic, version, flags, reserved, n, m = struct.unpack_from("<4sBBHII", payload)
    if magic != b"EMPB" or version != 1 or flags or reserved or len(payload) != 16 + 38 * n + m:
        return None
    table = payload[16 + 38 * n:]
    ids = table.split(b"\n") if n else []
    if len(ids) != n or (n == 0 and table):
        return None
    good = []
    for i in range(n):
        (ts,) = struct.unpack_from("<q", payload, 16 + 8 * i)
        (lat,) = struct.unpack_from("<d", payload, 16 + 8 * n + 8 * i)
        (lon,) = struct.unpack_from("<d", payload, 16 + 16 * n + 8 * i)
        (seq,) = struct.unpack_from("<q", payload, 16 + 24 * n + 8 * i)
        (acc,) = struct.unpack_from("<f", payload, 16 + 32 * n + 4 * i)
        src, batt = payload[16 + 36 * n + i], payload[16 + 37 * n + i]
        if (re.fullmatch(rb"[A-Za-z0-9._:-]{1,128}", ids[i]) and 0 <= ts <= 2**53
                and NOW - 7 * 86_400_000 <= ts <= NOW + 300_000 and -90 <= lat <= 90 and -180 <= lon <= 180
                and (acc != acc or 0 <= acc <= 1e7) and src <= 2 and (batt <= 100 or batt == 255)
                and (seq >= 0 or seq == -(2**63))):
            good.append(ids[i].decode())
    return good


def check_packed(payload: bytes, out: Decoded) -> str:
    """A packed batch: malformed = one dead letter; else exactly the valid rows, in order, nothing lost."""
    expected = packed_reference(payload)
    if expected is None or any("over limit" in d.reason for d in out.dead):
        if out.fix_count or len(out.dead) != 1:
            raise InvariantBroken("a rejected packed batch must be exactly one dead letter")
        return "packed rejected"
    accepted = [d for c in out.columns for d in c.device_ids]
    if accepted != expected or out.fixes or out.events:
        raise InvariantBroken(f"packed batch accepted {accepted}, the protocol says {expected}")
    n = struct.unpack_from("<I", payload, 8)[0]
    if out.fix_count + len(out.dead) != n:
        raise InvariantBroken(f"{n} packed rows became {out.fix_count} fixes + {len(out.dead)} dead")
    return "packed rows" if out.fix_count else "packed, no valid row"


def check(topic: str, payload: bytes, out: Decoded) -> str:
    """Raise InvariantBroken unless `out` is a legal outcome; return a label for the tally."""
    for dead in out.dead:
        if dead.topic != topic or not any(p in dead.reason for p in REASONS):
            raise InvariantBroken(f"dead letter without a documented reason: {dead.reason!r}")
    if topic == TOPICS[1] and payload[:4] == MAGIC:
        return check_packed(payload, out)
    if topic != TOPICS[1]:
        if len(out.fixes) + len(out.events) + len(out.dead) != 1:
            raise InvariantBroken(f"{len(out.fixes)} fixes, {len(out.events)} events, {len(out.dead)} dead")
    elif any("invalid gateway batch" in d.reason or "over limit" in d.reason for d in out.dead):
        if out.fixes or len(out.dead) != 1:
            raise InvariantBroken("a rejected batch must be exactly one dead letter")
    else:
        elements = msgspec.json.decode(payload, type=list[msgspec.Raw])
        if len(out.fixes) + len(out.dead) != len(elements) or out.events:
            got = f"{len(out.fixes)} fixes + {len(out.dead)} dead"
            raise InvariantBroken(f"{len(elements)} elements became {got}")
    if out.dead:
        return next(p for p in REASONS if p in out.dead[0].reason)
    return "fix" if out.fixes else "event" if out.events else "empty batch"


# -- the seeded structured generator ---------------------------------------------------------------------

def _junk(r: random.Random, depth: int = 0) -> Any:
    """A random JSON value: wrong types, huge numbers, NUL and non-ASCII text, small nests."""
    pick = r.randrange(9 if depth < 3 else 6)
    if pick == 6:
        return [_junk(r, depth + 1) for _ in range(r.randrange(3))]
    if pick == 7:
        return {str(r.randrange(99)): _junk(r, depth + 1) for _ in range(r.randrange(3))}
    return [None, r.random() < 0.5, r.randint(-(2**66), 2**66), r.uniform(-1e9, 1e9),
            "".join(chr(r.randrange(0xD800)) for _ in range(r.randrange(6))), r.choice(["\x00", "", "é"]),
            None, None, "gps"][pick]


def _fix(r: random.Random, gateway: bool) -> dict[str, Any]:
    fix: dict[str, Any] = {"ts": NOW - r.randrange(-400_000, 8 * 86_400_000), "lat": r.uniform(-92, 92),
                           "lon": r.uniform(-182, 182)}
    for key, value in (("acc", r.uniform(-1, 100)), ("src", r.choice(["gps", "wifi", "lbs", "x"])),
                       ("batt", r.randrange(-1, 102)), ("seq", r.randrange(-1, 2**40)), ("hdop", _junk(r))):
        if r.random() < 0.3:
            fix[key] = value
    if gateway:
        fix["dev"] = r.choice(["dev-1", "dev-2", "a/b", "", "d\x00", "x" * 129])
    if r.random() < 0.3:  # break one field
        fix[r.choice(["ts", "lat", "lon", "acc", "batt", "src", "dev"])] = _junk(r)
    if r.random() < 0.05:
        fix.pop(r.choice(["ts", "lat", "lon"]))
    return fix


def _mutate(r: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(r.randrange(1, 5)):
        at = r.randrange(len(b) + 1)
        op = r.randrange(4)
        if op == 0 and at < len(b):
            b[at] = r.randrange(256)
        elif op == 1 and at < len(b):
            del b[at]
        elif op == 2:
            b.insert(at, r.choice(b'{}[]",:0\\e-.\x00\xff'))
        else:
            del b[at:]
    return bytes(b)


def generate_for(r: random.Random, topic: str) -> bytes:
    """A plausible payload for one of the three inbound topics."""
    if topic == TOPICS[0]:
        return json.dumps(_fix(r, False)).encode()
    if topic == TOPICS[1]:
        return json.dumps([_fix(r, True) for _ in range(r.randrange(1, 4))]).encode()
    return json.dumps({"ts": NOW, "type": r.choice(EVENT_TYPES), "x": _junk(r)}).encode()


def _packed(r: random.Random) -> bytes:
    """A packed batch of mostly valid rows, some fields out of range; often then damaged."""
    n = r.randrange(8)

    def pick(valid: Any, *odd: Any) -> Any:
        return r.choice(odd) if odd and r.random() < 0.1 else valid

    rows = [(pick(r.choice(["dev-1", "dev-2", "gw.1:x_y"]), "", "a/b", "d\x00", "x" * 129, "é", "a b"),
             pick(NOW - r.randrange(-300_000, 7 * 86_400_000), NOW + 400_000, -1, 2**53 + 1, -(2**63),
                  2**63 - 1),
             pick(r.uniform(-90, 90), 90.0000001, -91.0, math.nan, math.inf),
             pick(r.uniform(-180, 180), 180.5, -math.inf, math.nan),
             pick(r.choice([math.nan, r.uniform(0, 1e7)]), -0.5, 2e7, math.inf),
             pick(r.randrange(3), 3, 255), pick(r.choice([255, r.randrange(101)]), 101, 254),
             pick(r.choice([-(2**63), r.randrange(2**63)]), -1, -(2**63) + 1)) for _ in range(n)]
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [() for _ in range(8)]
    dev, ts, lat, lon, acc, src, batt, seq = columns
    payload = encode_batch(list(dev), ts, lat, lon, acc=acc, src=src, batt=batt, seq=seq)
    if r.random() < 0.3:
        b = bytearray(payload)
        for _ in range(r.randrange(1, 4)):
            op, at = r.randrange(5), r.randrange(len(b) + 1)
            if op == 0 and at < len(b):
                b[at] = r.randrange(256)
            elif op == 1:
                del b[at:]
            elif op == 2:
                b.insert(at, r.choice(b"\n\x00\xff-"))
            elif op == 3 and len(b) >= 16:  # the header lies about the count or the id table
                lie = r.choice([0, 1, n + 1, 2**32 - 1, r.randrange(2**32)])
                struct.pack_into("<I", b, r.choice([8, 12]), lie)
            elif len(b) >= 8:
                b[r.randrange(4, 8)] = r.randrange(256)  # version, flags, reserved
        payload = bytes(b)
    return payload


def generate(r: random.Random) -> tuple[str, bytes]:
    """One (topic, payload): mostly plausible, often broken, sometimes hostile."""
    if r.random() < 0.15:
        return TOPICS[1], _packed(r)
    kind = r.randrange(100)
    if kind < 30:
        topic, payload = TOPICS[0], json.dumps(_fix(r, False)).encode()
    elif kind < 45:
        topic, payload = TOPICS[1], json.dumps([_fix(r, True) for _ in range(r.randrange(8))]).encode()
    elif kind < 55:
        ts = NOW - r.randrange(-400_000, 8 * 86_400_000)
        event = {"ts": ts, "type": r.choice(EVENT_TYPES), "x": _junk(r)}
        topic, payload = TOPICS[2], json.dumps(event).encode()
    elif kind < 80:
        topic = r.choice(TOPICS)
        payload = _mutate(r, json.dumps(_fix(r, True) if topic != TOPICS[1] else [_fix(r, True)]).encode())
    elif kind < 92:
        topic, payload = r.choice(TOPICS), r.randbytes(r.randrange(64))
    elif kind < 97:
        depth = r.randrange(500, 4000)
        topic, payload = r.choice(TOPICS), b'{"ts": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind < 99:
        topic, payload = r.choice(ODD_TOPICS), b"{}"
    else:
        topic, payload = r.choice(TOPICS), b" " * (LIMIT + r.randrange(1, 3))
    return topic, payload


# -- running and measuring -------------------------------------------------------------------------------

def rss_mib() -> float:
    """Resident set size now (not the peak), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Tally:
    """Counts outcomes and samples memory at evenly spaced checkpoints."""

    def __init__(self, runs: int) -> None:
        self.runs, self.done, self.outcomes = runs, 0, Counter[str]()
        self.every = max(1, runs // SAMPLES)
        self.rss: list[float] = []
        self.started = time.perf_counter()

    def one(self, topic: str, payload: bytes) -> None:
        try:
            self.outcomes[check(topic, payload, decoder.decode(topic, payload, NOW))] += 1
        except Exception as exc:
            raise InvariantBroken(f"on {topic!r} {payload[:300]!r}: {exc!r}") from exc
        self.done += 1
        if self.done % self.every == 0:
            gc.collect()
            self.rss.append(rss_mib())
            print(f"  {self.done:>9,} payloads  rss {self.rss[-1]:7.1f} MiB", flush=True)
        if self.done == self.runs:
            self.report()

    def report(self) -> None:
        elapsed = time.perf_counter() - self.started
        warm = self.rss[1] if len(self.rss) > 1 else self.rss[0]  # after the first checkpoint: caches warm
        growth = self.rss[-1] - warm
        print(f"\n{self.done:,} payloads in {elapsed:.1f} s ({self.done / elapsed:,.0f}/s),"
              " no exception escaped,"
              " every invariant held")
        print("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in self.outcomes.most_common()))
        print(f"memory: rss {self.rss[0]:.1f} MiB at the first checkpoint, {warm:.1f} after warm-up,"
              f" {self.rss[-1]:.1f} at the end ({growth:+.1f} MiB): {'flat' if growth < 8 else 'GROWING'}")
        sys.stdout.flush()
        if growth >= 8:
            os._exit(1)


def run_random(runs: int, seed: int) -> None:
    r, tally = random.Random(seed), Tally(runs)
    for _ in range(runs):
        tally.one(*generate(r))


def run_atheris(runs: int, seed: int) -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()  # coverage of the decoder's Python branches guides the mutations
    tally, topics = Tally(runs), (*TOPICS, *ODD_TOPICS)

    def one_input(data: bytes) -> None:
        tally.one(topics[data[0] % len(topics)] if data else TOPICS[0], data[1:])  # byte 0 picks the topic

    # Seeds: a valid message of each kind, so mutations start from the protocol, not from nothing.
    corpus = Path(tempfile.gettempdir()) / "emwatch-fuzz-corpus"  # kept: the next run starts from it
    corpus.mkdir(exist_ok=True)
    r = random.Random(seed)
    for i, topic in enumerate(TOPICS):
        for j in range(3):
            payload = generate_for(r, topic)
            (corpus / f"seed-{i}-{j}").write_bytes(bytes([i]) + payload)
    tokens = ['"ts"', '"lat"', '"lon"', '"acc"', '"src"', '"batt"', '"seq"', '"dev"', '"type"', '"gps"',
              '"heartbeat"', "1790000000000", "-0.0", "1e400", "\\u0000", "[", "{", "null", "true"]
    dictionary = corpus.parent / "emwatch-fuzz.dict"
    dictionary.write_text("".join(f"{json.dumps(t)}\n" for t in tokens))
    # libFuzzer exits the process itself after -runs; Tally.report prints on the last run.
    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-seed={seed}", "-max_len=4096", f"-dict={dictionary}",
                   str(corpus)], one_input)
    atheris.Fuzz()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["random", "atheris"], default="random")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    engines: dict[str, Callable[[int, int], None]] = {"random": run_random, "atheris": run_atheris}
    print(f"fuzzing MessageDecoder.decode with {args.runs:,} payloads ({args.engine}, seed {args.seed})")
    engines[args.engine](args.runs, args.seed)


if __name__ == "__main__":
    main()
