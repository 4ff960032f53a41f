"""Load process: publishes fixes at a fixed rate over a lean raw-socket MQTT 3.1.1 client (QoS 1).

Run as several processes by the e2e benchmark, so the publisher is not what is measured:
    python benchmarks/loadgen.py --port P --positions F --shape single|batch|batch-bin --rate R --seconds S
      --part K --parts N
`batch` publishes JSON gateway batches, `batch-bin` the same fixes as packed batches (docs/protocol.md §1.4).
Every fix carries `ts` = the publisher's clock when sent, which the alert's `ts` echoes: the feed
client's clock minus it is fix→alert latency. Prints one JSON line of counts and CPU seconds at the end
(`cpu_s` from the first publish on; the imports and set-up before it are `startup_cpu_s`).
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import struct
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

TICK_S = 0.005
PROBE_PHASE = 4
MAX_UNACKED = 40_000  # stay clear of the 65,535 packet ids
TS_HOLE = "9999999999999"  # where a JSON batch template takes its send time (13 digits, as epoch ms now)
TS_HOLE_BYTES = TS_HOLE.encode()
TS_LE = struct.Struct("<q")
PACKED_HEADER_BYTES = 16  # packed.HEADER: magic, version, flags, reserved, count, id bytes


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack("!H", len(cid)) + cid  # clean session, no keepalive
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH, QoS 1."""
    rest = struct.pack("!H", len(topic)) + topic + struct.pack("!H", packet_id) + payload
    return b"\x32" + _remaining_length(len(rest)) + rest


class Publisher:
    """One blocking TCP connection; counts PUBACKs (the only packets a publish-only client receives)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(_connect_packet(client_id))
        if self.sock.recv(4)[:1] != b"\x20":
            raise RuntimeError("broker refused the connection")
        self.sock.setblocking(False)
        self.sent = self.acked = 0
        self._next_id = 0
        self._partial = 0

    def packet_id(self) -> int:
        self._next_id = self._next_id % 65_535 + 1
        return self._next_id

    def send(self, data: bytes, count: int) -> None:
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([self.sock], [self.sock], [], 1.0)
            self.read_acks()
            if writable:
                try:
                    view = view[self.sock.send(view):]
                except BlockingIOError:
                    pass
        self.sent += count

    def read_acks(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                raise RuntimeError("broker closed the connection")
            self._partial += len(chunk)
            self.acked += self._partial // 4
            self._partial %= 4

    def wait_acks(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.acked < self.sent and time.monotonic() < deadline:
            select.select([self.sock], [], [], 0.05)
            self.read_acks()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--positions", required=True, help="npz with lon, lat, probe_in (lon, lat), probe_out")
    ap.add_argument("--shape", choices=["single", "batch", "batch-bin"], required=True)
    ap.add_argument("--rate", type=float, required=True, help="fixes/s of this process")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--part", type=int, default=0)
    ap.add_argument("--parts", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args()

    pos = np.load(args.positions)
    n = len(pos["lon"])
    mine = np.arange(args.part, n, args.parts)
    lon, lat = pos["lon"].tolist(), pos["lat"].tolist()
    probe_in, probe_out = pos["probe_in"], pos["probe_out"]  # (n, 2), NaN for non-probe devices
    is_probe = ~np.isnan(probe_in[:, 0])
    reports = np.zeros(n, dtype=np.int64)
    pub = Publisher(args.port, f"bench-load-{args.part}-{time.time_ns()}")
    fix_topics = [f"em/v1/devices/dev-{i:07d}/fix".encode() for i in range(n)]
    batch_topic = f"em/v1/gateways/gw-{args.part}/batch".encode()

    def position(i: int, inside: bool) -> tuple[float, float]:
        if is_probe[i]:
            x, y = (probe_in if inside else probe_out)[i].tolist()
            return x, y
        return lon[i], lat[i]

    def fix(i: int, ts: int | str, with_dev: bool, inside: bool) -> bytes:
        x, y = position(i, inside)
        dev = f'"dev":"dev-{i:07d}",' if with_dev else ""
        return f'{{{dev}"ts":{ts},"lat":{y:.6f},"lon":{x:.6f},"acc":8.0}}'.encode()

    def single_phase(i: int) -> bool:
        if not is_probe[i]:
            return False
        reports[i] += 1
        return bool((reports[i] // PROBE_PHASE) % 2 == 1)

    batches = None
    if args.shape != "single":
        if args.shape == "batch-bin":
            body_of = _packed_body(position, args.batch_size)
        else:
            def body_of(ids: list[int], inside: dict[int, bool]) -> bytes:
                return b"[" + b",".join(fix(i, TS_HOLE, True, inside.get(i, False)) for i in ids) + b"]"
        packed = args.shape == "batch-bin"
        batches = BatchMaker(mine, args.batch_size, is_probe, reports, body_of, packed=packed)

    ready = resource.getrusage(resource.RUSAGE_SELF)  # imports and set-up are not publishing
    cursor, start = 0, time.monotonic()
    last_ts = 0
    per_msg = 1 if args.shape == "single" else args.batch_size
    while (elapsed := time.monotonic() - start) < args.seconds:
        # message k is due half a message early (rounding, not truncating): otherwise each process ends
        # its window up to a whole message short, 5 % of a 2 s quick step at 1,000 fixes/s per process
        due = int(args.rate * elapsed + per_msg / 2) - pub.sent * per_msg
        if due < per_msg or pub.sent - pub.acked > MAX_UNACKED:
            pub.read_acks()
            time.sleep(TICK_S)
            continue
        ts = max(int(time.time() * 1000), last_ts + 1)  # strictly increasing: (device, ts) stays unique
        last_ts = ts
        packets = []
        # at most one message per device per ts: a repeated (device, ts) would be a duplicate fix
        for _ in range(min(due // per_msg, max(1, len(mine) // per_msg), 2_000)):
            if batches is None:
                i = int(mine[cursor % len(mine)])
                cursor += 1
                body = fix(i, ts, False, single_phase(i))
                packets.append(publish_packet(fix_topics[i], body, pub.packet_id()))
            else:
                body = batches.make(cursor, ts)
                cursor += per_msg
                packets.append(publish_packet(batch_topic, body, pub.packet_id()))
        pub.send(b"".join(packets), len(packets))
    wall = time.monotonic() - start
    pub.wait_acks(30.0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "messages": pub.sent, "fixes": pub.sent * per_msg, "acked": pub.acked, "seconds": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime - ready.ru_utime - ready.ru_stime,
        "startup_cpu_s": ready.ru_utime + ready.ru_stime,
    }), flush=True)


class BatchMaker:
    """Gateway batches of `size` consecutive devices of `mine`, made from templates: the body of each
    (first device, probe phases) is encoded once with a placeholder time, and each send only writes its
    time in (one C-level replace or splice), so the publisher costs little of the two cores it shares."""

    def __init__(self, mine: NDArray[np.intp], size: int, is_probe: NDArray[np.bool_],
                 reports: NDArray[np.int64], body_of: Callable[[list[int], dict[int, bool]], bytes],
                 packed: bool) -> None:
        self.mine, self.size, self.is_probe, self.reports = mine, size, is_probe, reports
        self.body_of, self.packed = body_of, packed
        self._chunks: dict[int, tuple[list[int], NDArray[np.intp]]] = {}
        self._bodies: dict[tuple[int, bytes], tuple[bytes, bytes]] = {}
        self._ts: tuple[int, bytes] = (-1, b"")

    def make(self, cursor: int, ts: int) -> bytes:
        """The batch starting at `cursor`, sent at `ts`; advances the probes' report counts."""
        start = cursor % len(self.mine)
        if (chunk := self._chunks.get(start)) is None:
            rows = self.mine[np.arange(start, start + self.size) % len(self.mine)]
            probes = rows[self.is_probe[rows]] if len(self.mine) >= self.size else rows[:0]
            chunk = self._chunks[start] = (rows.tolist(), probes)
        ids, probes = chunk
        # PROBE_PHASE reports in, then as many out: long enough for the debounce to open and clear. (With
        # fewer devices than a batch holds, a device comes twice per batch: its probe then stays out.)
        self.reports[probes] += 1
        inside = (self.reports[probes] // PROBE_PHASE) % 2 == 1
        key = (start, inside.tobytes())
        if (parts := self._bodies.get(key)) is None:
            body = self.body_of(ids, dict(zip(probes.tolist(), inside.tolist(), strict=True)))
            if self.packed:  # the ts column comes first after the header (docs/protocol.md §1.4)
                cut = PACKED_HEADER_BYTES + 8 * len(ids)
                parts = self._bodies[key] = (body[:PACKED_HEADER_BYTES], body[cut:])
            else:
                parts = self._bodies[key] = (body, b"")
        if self._ts[0] != ts:
            self._ts = (ts, TS_LE.pack(ts) * self.size if self.packed else str(ts).encode())
        if self.packed:
            return parts[0] + self._ts[1] + parts[1]
        return parts[0].replace(TS_HOLE_BYTES, self._ts[1])


def _packed_body(position: Callable[[int, bool], tuple[float, float]], size: int
                 ) -> Callable[[list[int], dict[int, bool]], bytes]:
    """A maker of packed batch bodies (ts 0: BatchMaker writes the send time into the ts column)."""
    from emwatch.ingest.packed import HEADER, encode_batch  # only this shape pays for importing emwatch

    if HEADER.size != PACKED_HEADER_BYTES:
        raise RuntimeError("the packed header changed: update PACKED_HEADER_BYTES")
    names: dict[int, str] = {}

    def body(ids: list[int], inside: dict[int, bool]) -> bytes:
        xy = np.array([position(i, inside.get(i, False)) for i in ids])
        dev = [names.setdefault(i, f"dev-{i:07d}") for i in ids]
        return encode_batch(dev, np.zeros(len(ids), dtype=np.int64), xy[:, 1], xy[:, 0], acc=8.0)

    return body


if __name__ == "__main__":
    main()
