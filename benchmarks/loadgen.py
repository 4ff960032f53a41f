"""Load process: publishes fixes at a fixed rate over a lean raw-socket MQTT 3.1.1 client (QoS 1).

Run as several processes by the e2e benchmark, so the publisher is not what is measured:
    python benchmarks/loadgen.py --port P --positions F --shape single|batch|batch-bin --rate R --seconds S
      --part K --parts N
`batch` publishes JSON gateway batches, `batch-bin` the same fixes as packed batches (docs/protocol.md §1.4).
Every fix carries `ts` = the publisher's clock when sent, which the alert's `ts` echoes: the feed
client's clock minus it is fix→alert latency. Prints one JSON line of counts and CPU seconds at the end.
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
from operator import itemgetter

import numpy as np
from numpy.typing import NDArray

TICK_S = 0.005
PROBE_PHASE = 4
MAX_UNACKED = 40_000  # stay clear of the 65,535 packet ids


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

    def fix(i: int, ts: int, with_dev: bool) -> bytes:
        if is_probe[i]:
            # PROBE_PHASE reports in, then as many out: long enough for the debounce to open and clear
            reports[i] += 1
            inside = (reports[i] // PROBE_PHASE) % 2 == 1
            x, y = (probe_in if inside else probe_out)[i].tolist()
        else:
            x, y = lon[i], lat[i]
        dev = f'"dev":"dev-{i:07d}",' if with_dev else ""
        return f'{{{dev}"ts":{ts},"lat":{y:.6f},"lon":{x:.6f},"acc":8.0}}'.encode()

    packed_batch = _packed_batches(pos, is_probe, reports) if args.shape == "batch-bin" else None

    cursor, start = 0, time.monotonic()
    last_ts = 0
    per_msg = 1 if args.shape == "single" else args.batch_size
    while (elapsed := time.monotonic() - start) < args.seconds:
        due = int(args.rate * elapsed) - pub.sent * per_msg
        if due < per_msg or pub.sent - pub.acked > MAX_UNACKED:
            pub.read_acks()
            time.sleep(TICK_S)
            continue
        ts = max(int(time.time() * 1000), last_ts + 1)  # strictly increasing: (device, ts) stays unique
        last_ts = ts
        packets = []
        # at most one message per device per ts: a repeated (device, ts) would be a duplicate fix
        for _ in range(min(due // per_msg, max(1, len(mine) // per_msg), 2_000)):
            if per_msg == 1:
                i = int(mine[cursor % len(mine)])
                cursor += 1
                packets.append(publish_packet(fix_topics[i], fix(i, ts, False), pub.packet_id()))
            elif packed_batch is not None:
                body = packed_batch(mine[np.arange(cursor, cursor + per_msg) % len(mine)], ts)
                cursor += per_msg
                packets.append(publish_packet(batch_topic, body, pub.packet_id()))
            else:
                ids = mine[np.arange(cursor, cursor + per_msg) % len(mine)].tolist()
                cursor += per_msg
                body = b"[" + b",".join(fix(i, ts, True) for i in ids) + b"]"
                packets.append(publish_packet(batch_topic, body, pub.packet_id()))
        pub.send(b"".join(packets), len(packets))
    wall = time.monotonic() - start
    pub.wait_acks(30.0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "messages": pub.sent, "fixes": pub.sent * per_msg, "acked": pub.acked, "seconds": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }), flush=True)


def _packed_batches(pos: np.lib.npyio.NpzFile, is_probe: NDArray[np.bool_], reports: NDArray[np.int64]
                    ) -> Callable[[NDArray[np.intp], int], bytes]:
    """A maker of packed batches with the same positions and probe phases as `fix` (vectorized)."""
    from emwatch.ingest.packed import encode_batch  # only this shape pays for importing emwatch

    lon, lat, probe_in, probe_out = pos["lon"], pos["lat"], pos["probe_in"], pos["probe_out"]
    names = [f"dev-{i:07d}" for i in range(len(lon))]

    def batch(ids: NDArray[np.intp], ts: int) -> bytes:
        probes = ids[is_probe[ids]]
        np.add.at(reports, probes, 1)
        inside = (reports[ids] // PROBE_PHASE) % 2 == 1
        where = np.where(inside[:, None], probe_in[ids], probe_out[ids])
        x = np.where(is_probe[ids], where[:, 0], lon[ids])
        y = np.where(is_probe[ids], where[:, 1], lat[ids])
        dev = list(itemgetter(*ids.tolist())(names)) if len(ids) > 1 else [names[int(ids[0])]]
        return encode_batch(dev, np.full(len(ids), ts), y, x, acc=8.0)

    return batch


if __name__ == "__main__":
    main()
