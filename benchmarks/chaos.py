"""Chaos run: numbered fixes go in while the service, the broker and PostgreSQL are knocked over at random.

    python benchmarks/chaos.py --duration 120 --seed 7     # full run
    python benchmarks/chaos.py --short --seed 1            # CI: ~30 s of faults, bounded to ~90 s

Private PostgreSQL and Mosquitto (persistent) run on free ports under a temporary folder; the service
is `python -m emwatch.cli serve` pointed at them. One publisher connection per device sends fixes with
QoS 1 and records every PUBACK. Faults, one at a time: the service SIGKILLed and restarted, the broker
stopped gracefully (SIGTERM) and restarted on the same port and persistence folder, PostgreSQL
stopped and started. Then, all servers up again, the database must hold every PUBACKed fix exactly
once, and exactly one `zone_entry` episode per run of fixes inside the subject's exclusion zone.
Exit status 0 when that holds; the figures are printed (and written as JSON with --json).

The broker is only ever stopped gracefully here: what Mosquitto itself loses when it crashes is
measured by benchmarks/broker_loss.py. PostgreSQL runs with fsync off (its stops are clean shutdowns,
so this tests the service, not the disk).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
import orjson
from chaos_cluster import ADMIN, Cluster

HOME = (120.100, 30.300)  # compliant position: outside the exclusion zone
BREACH = (120.106, 30.300)  # inside the exclusion zone below
EXCLUSION = [[120.105, 30.299], [120.107, 30.299], [120.107, 30.301], [120.105, 30.301], [120.105, 30.299]]
BREACH_PHASES = (5, 6, 7)  # of every 10 fixes per device, these are inside the zone: one episode each


@dataclass
class Figures:
    """What happened and what was found; `failures` is empty when nothing was lost or duplicated."""

    faults: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    acked: int = 0
    publisher_reconnects: int = 0
    stored: int = 0
    stored_unacked: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    alerts_expected: int = 0
    alerts_found: int = 0
    alerts_missing: list[str] = field(default_factory=list)
    alerts_duplicated: list[str] = field(default_factory=list)
    alerts_unexpected: list[str] = field(default_factory=list)
    alerts_bad_history: list[str] = field(default_factory=list)  # not one "alert" event and <= 1 "cleared"
    service_exits: int = 0
    service_critical: list[str] = field(default_factory=list)  # CRITICAL lines of the service's log
    seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} PUBACKed fix(es) not stored, seq {self.lost[:50]}")
        if self.duplicated:
            out.append(f"{len(self.duplicated)} fix(es) stored twice, seq {self.duplicated[:50]}")
        if self.service_critical:  # e.g. "pipeline stopped": the service lives on but ingests nothing
            first = self.service_critical[0]
            out.append(f"{len(self.service_critical)} CRITICAL line(s) in the service log, first: {first}")
        for name in ("alerts_missing", "alerts_duplicated", "alerts_unexpected", "alerts_bad_history"):
            if items := getattr(self, name):
                out.append(f"{name.replace('_', ' ')}: {len(items)}: {items[:20]}")
        return out

    def report(self) -> dict[str, Any]:
        faults = dict(sorted(self.faults.items()))
        return {
            "faults": faults, "faults_total": sum(faults.values()), "fixes_sent": self.sent,
            "fixes_acked": self.acked, "fixes_stored": self.stored,
            "stored_without_puback": self.stored_unacked,
            "fixes_lost": len(self.lost), "fixes_duplicated": len(self.duplicated),
            "alerts_expected": self.alerts_expected, "alerts_found": self.alerts_found,
            "publisher_reconnects": self.publisher_reconnects, "service_exits_restarted": self.service_exits,
            "service_critical_logs": len(self.service_critical),
            "seconds": round(self.seconds, 1), "failures": self.failures,
        }


async def set_up_subjects(cluster: Cluster, devices: list[str]) -> None:
    """Through the API: one subject per device, each with an exclusion zone around BREACH."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cluster.http_port}", timeout=10) as http:
        r = await http.post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        r.raise_for_status()
        http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        r = await http.post("/api/jurisdictions", json={"id": "j-chaos", "name": "Chaos", "kind": "district"})
        assert r.status_code in (201, 409), r.text
        for device in devices:
            subject = f"s-{device}"
            for path, body in (
                ("/api/subjects", {"id": subject, "name": subject, "jurisdiction_id": "j-chaos"}),
                ("/api/devices", {"id": device, "kind": "ankle", "subject_id": subject}),
            ):
                r = await http.post(path, json=body)
                assert r.status_code == 201, r.text
            zone = {"type": "Feature", "id": f"z-{device}",
                    "geometry": {"type": "Polygon", "coordinates": [EXCLUSION]},
                    "properties": {"kind": "exclusion", "name": "victim home", "subject_id": subject}}
            r = await http.post("/api/zones", json={"type": "FeatureCollection", "features": [zone]})
            assert r.status_code == 201, r.text


@dataclass
class Publisher:
    """One QoS 1 connection per device; remembers each fix sent and each PUBACK received."""

    mqtt_port: int
    rate_per_device: float
    sent: dict[int, tuple[str, int]] = field(default_factory=dict)  # seq -> (device, ts)
    acked: set[int] = field(default_factory=set)
    reconnects: int = 0
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    async def run(self, index: int, device: str, stop: asyncio.Event) -> None:
        step, last_ts, n = 1 / self.rate_per_device, 0, 0
        while not stop.is_set():
            try:
                client = aiomqtt.Client("127.0.0.1", self.mqtt_port, identifier=f"chaos-pub-{index}",
                                        protocol=aiomqtt.ProtocolVersion.V311, clean_session=True)
                async with client:
                    while not stop.is_set():
                        seq, breach = next(self._seq), n % 10 in BREACH_PHASES
                        n += 1
                        last_ts = max(int(time.time() * 1000), last_ts + 1)
                        lon, lat = BREACH if breach else HOME
                        self.sent[seq] = (device, last_ts)
                        payload = {"ts": last_ts, "lat": lat, "lon": lon, "acc": 5.0, "seq": seq}
                        topic = f"em/v1/devices/{device}/fix"
                        await client.publish(topic, orjson.dumps(payload), qos=1, timeout=5)
                        self.acked.add(seq)  # publish() returns once the broker's PUBACK arrived
                        await asyncio.sleep(step)
            except (aiomqtt.MqttError, TimeoutError):
                self.reconnects += 1
                await asyncio.sleep(0.2)


async def inject_faults(cluster: Cluster, rng: random.Random, duration_s: float, figures: Figures) -> None:
    """One fault at a time, a random pause between them, for duration_s."""
    t0 = time.monotonic()
    until = t0 + duration_s
    kinds = ["service_sigkill", "broker_restart", "postgres_restart"]
    first = rng.sample(kinds, len(kinds))  # every kind at least once, even in a short run
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        kind = first.pop() if first else rng.choice(kinds)
        figures.faults[kind] += 1
        print(f"  t={time.monotonic() - t0:6.1f}s fault: {kind}", flush=True)
        if kind == "service_sigkill":
            async with cluster.service_lock:
                cluster.stop_service(signal.SIGKILL)
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                cluster.start_service()
        elif kind == "broker_restart":
            await asyncio.to_thread(cluster.broker.stop)  # SIGTERM: Mosquitto saves its store and exits
            await asyncio.sleep(rng.uniform(0.0, 2.0))
            await asyncio.to_thread(cluster.broker.start)
        else:
            await asyncio.to_thread(cluster.postgres.stop)
            await asyncio.sleep(rng.uniform(1.0, 6.0))
            await asyncio.to_thread(cluster.postgres.start)


async def check(
    cluster: Cluster, pub: Publisher, devices: list[str], drain_s: float, figures: Figures
) -> None:
    """Wait for the PUBACKed fixes to be stored (up to drain_s), then compare the database with the stream."""
    conn = await asyncpg.connect(cluster.database_url)
    try:
        deadline = time.monotonic() + drain_s
        while True:
            rows = await conn.fetch(
                "SELECT seq, device_id, ts, lon FROM fixes WHERE device_id = ANY($1)", devices)
            per_seq = Counter(r["seq"] for r in rows)
            if pub.acked <= per_seq.keys() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        figures.stored = len(rows)
        figures.lost = sorted(pub.acked - per_seq.keys())
        figures.duplicated = sorted(s for s, k in per_seq.items() if k > 1)
        figures.stored_unacked = len(per_seq.keys() - pub.acked)
        # Expected episodes: one per run of consecutive in-zone fixes among those stored, per device.
        expected: Counter[str] = Counter()
        for device in devices:
            fixes = sorted((r["ts"], r["lon"] > EXCLUSION[0][0]) for r in rows if r["device_id"] == device)
            for i, (ts, inside) in enumerate(fixes):
                if inside and (i == 0 or not fixes[i - 1][1]):
                    expected[f"{device}@{ts.isoformat()}"] += 1
        alerts = await conn.fetch(
            "SELECT a.device_id, a.opened_at, count(*) FILTER (WHERE e.type = 'alert') AS opened,"
            " count(*) FILTER (WHERE e.type = 'cleared') AS cleared FROM alerts a"
            " LEFT JOIN alert_events e ON e.alert_id = a.id"
            " WHERE a.rule = 'zone_entry' AND a.device_id = ANY($1) GROUP BY a.id", devices)
        figures.alerts_bad_history = sorted(
            f"{r['device_id']}@{r['opened_at'].isoformat()} ({r['opened']} opened, {r['cleared']} cleared)"
            for r in alerts if r["opened"] != 1 or r["cleared"] > 1)
        found = Counter(f"{r['device_id']}@{r['opened_at'].isoformat()}" for r in alerts)
        figures.alerts_expected, figures.alerts_found = sum(expected.values()), sum(found.values())
        figures.alerts_missing = sorted(expected.keys() - found.keys())
        figures.alerts_unexpected = sorted(found.keys() - expected.keys())
        figures.alerts_duplicated = sorted(k for k, n in found.items() if n > 1)
    finally:
        await conn.close()


async def chaos(
    work: Path, duration_s: float, seed: int, devices_n: int, rate: float, drain_s: float
) -> Figures:
    """Set up, publish under faults for duration_s, recover everything, check; returns the figures."""
    rng, figures, cluster = random.Random(seed), Figures(), Cluster(work)
    devices = [f"chaos-{i}" for i in range(devices_n)]
    started = time.monotonic()
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # the publishers' lost connections are expected
    asyncio.get_running_loop().set_exception_handler(_quiet_lost_connections)
    await asyncio.to_thread(cluster.postgres.start)
    await asyncio.to_thread(cluster.broker.start)
    cluster.start_service()
    supervisor = asyncio.create_task(cluster.supervise())
    try:
        await cluster.healthy(60)
        await set_up_subjects(cluster, devices)
        async with cluster.service_lock:  # restart so that the registry surely holds the new zones
            cluster.stop_service(signal.SIGTERM)
            cluster.start_service()
        await cluster.healthy(60)
        pub, stop = Publisher(cluster.mqtt_port, rate), asyncio.Event()
        publishers = [asyncio.create_task(pub.run(i, d, stop)) for i, d in enumerate(devices)]
        await inject_faults(cluster, rng, duration_s, figures)
        stop.set()
        await asyncio.gather(*publishers)
        await cluster.healthy(60)
        await check(cluster, pub, devices, drain_s, figures)
        figures.sent, figures.acked = len(pub.sent), len(pub.acked)
        figures.publisher_reconnects = pub.reconnects
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        figures.service_exits = cluster.exits
        log = (work / "service.log").read_text(errors="replace").splitlines()
        figures.service_critical = [line for line in log if " CRITICAL " in line]
        cluster.stop_service(signal.SIGTERM)
        await asyncio.to_thread(cluster.broker.stop)
        await asyncio.to_thread(cluster.postgres.stop)
        figures.seconds = time.monotonic() - started
    return figures


def _quiet_lost_connections(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aiomqtt leaves a "never retrieved" disconnect future behind each broker restart: expected here."""
    if not isinstance(context.get("exception"), aiomqtt.MqttError):
        loop.default_exception_handler(context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of fault injection")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--rate", type=float, default=20.0, help="fixes per second per device")
    parser.add_argument("--short", action="store_true", help="CI mode: 30 s of faults, 4 devices")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="work folder to keep (logs, data); default: temporary")
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: needs a new or empty folder (a run sets up its own subjects)")
    duration, devices, drain = (30.0, 4, 20.0) if args.short else (args.duration, args.devices, 60.0)
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emwatch-chaos-")))
        work.mkdir(parents=True, exist_ok=True)
        print(f"chaos: seed {args.seed}, {duration:.0f} s of faults, {devices} devices x {args.rate:g}"
              f" fixes/s, work {work}", flush=True)
        figures = asyncio.run(chaos(work, duration, args.seed, devices, args.rate, drain))
        report = figures.report() | {"seed": args.seed, "short": args.short}
        print(json.dumps(report, indent=2))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        if figures.failures:
            print("FAILED:\n  " + "\n  ".join(figures.failures) + f"\n  service log: {work / 'service.log'}")
            if args.keep is None:
                print((work / "service.log").read_text(errors="replace")[-4000:])
            return 1
    print("OK: every PUBACKed fix stored exactly once; every expected alert exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
