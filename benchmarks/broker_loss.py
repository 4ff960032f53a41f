"""Mosquitto's own durability limit: PUBACKed QoS 1 messages lost when the broker is SIGKILLed.

    python benchmarks/broker_loss.py                # all configurations, 3 kills each
    python benchmarks/broker_loss.py --quick        # 1 kill each, shorter streams

A persistent-session subscriber (clean session off, QoS 1) subscribes and goes offline, as our
consumer is while it restarts. A publisher streams QoS 1 messages as fast as the broker acks them
(1,000 in flight) and records each PUBACK; at a random moment the broker gets SIGKILL (a crash, the
OOM killer, a power cut of the process). The broker restarts on the same persistence file and the
subscriber comes back for its queued messages: every PUBACKed message it does not get was lost by the
broker. Publish throughput with the offline subscriber's queue growing is measured too: with
`autosave_on_changes` each save rewrites the whole store, queued messages included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from emwatch.embedded import _mosquitto_binary
from emwatch.server_process import free_port

# (name, autosave_on_changes, autosave_interval): the interval counts changes when on_changes is true,
# seconds otherwise.
CONFIGS = [
    ("changes-100 (shipped before)", True, 100),
    ("changes-1", True, 1),
    ("seconds-1", False, 1),
    ("seconds-5", False, 5),
    ("seconds-1800 (Mosquitto default)", False, 1800),
]
BURST = 250  # burst trials: this many PUBACKed messages, then SIGKILL at once
THROUGHPUT_N = 10_000  # messages per throughput step (mosquitto_pub, a C client)
TOPIC = "loss/stream"


@dataclass
class Trial:
    config: str
    # "stream": SIGKILL at a random moment; "burst": right after BURST PUBACKs; "sigterm": control
    kind: str
    acked: int
    received: int
    lost: int
    publish_rate: float  # PUBACKed messages per second before the kill
    store_bytes: int  # mosquitto.db after the restart


class Broker:
    """Mosquitto with one persistence folder, restartable on the same port."""

    def __init__(self, folder: Path, on_changes: bool, interval: int) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mosquitto.conf").write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence true",
            f"persistence_location {folder}/", f"autosave_on_changes {str(on_changes).lower()}",
            f"autosave_interval {interval}", "max_queued_messages 0", "max_inflight_messages 1000",
            "set_tcp_nodelay true", "log_dest stderr", "log_type error", "log_type warning",
            # As root, Mosquitto switches to user `mosquitto`, who cannot write into our temporary folder.
            *(["user root"] if os.geteuid() == 0 else []),
        ]) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = _mosquitto_binary()
        assert binary is not None, "needs mosquitto"
        with (self.folder / "mosquitto.log").open("ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.folder / "mosquitto.conf")], stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=120)

    def client(self, identifier: str, clean: bool) -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", self.port, identifier=identifier, clean_session=clean,
                              protocol=aiomqtt.ProtocolVersion.V311, max_inflight_messages=1000,
                              max_queued_incoming_messages=0)

    async def connectable(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with self.client(f"probe-{time.monotonic_ns()}", clean=True):
                    return
            except aiomqtt.MqttError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def publish_until(broker: Broker, stop_at: float, acked: list[int], count: int | None = None) -> None:
    """Publish numbered QoS 1 messages (1,000 in flight) until stop_at, `count` sent, or the broker dies."""
    window = asyncio.Semaphore(1000)

    async def one(client: aiomqtt.Client, n: int) -> None:
        try:
            await client.publish(TOPIC, str(n).encode(), qos=1, timeout=10)
            acked.append(n)  # publish() returns after the PUBACK
        except (aiomqtt.MqttError, TimeoutError):
            pass
        finally:
            window.release()

    with contextlib.suppress(aiomqtt.MqttError):
        async with broker.client("loss-pub", clean=True) as client:
            tasks: set[asyncio.Task[None]] = set()
            n = 0
            while time.monotonic() < stop_at and (count is None or n < count):
                await window.acquire()
                task = asyncio.create_task(one(client, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.gather(*tasks)


async def collect(broker: Broker, quiet_s: float = 2.0) -> set[int]:
    """Reconnect the persistent subscriber and take what the broker kept for it."""
    got: set[int] = set()
    async with broker.client("loss-sub", clean=False) as sub:
        with contextlib.suppress(TimeoutError):
            while True:
                async with asyncio.timeout(quiet_s):
                    message = await anext(sub.messages)
                got.add(int(bytes(message.payload)))
    return got


async def trial(folder: Path, name: str, on_changes: bool, interval: int, seconds: float, kind: str,
                rng: random.Random) -> Trial:
    shutil.rmtree(folder, ignore_errors=True)
    broker = Broker(folder, on_changes, interval)
    broker.start()
    try:
        await broker.connectable()
        async with broker.client("loss-sub", clean=False) as sub:
            await sub.subscribe(TOPIC, qos=1)
        acked: list[int] = []
        started = time.monotonic()
        if kind == "burst":
            await publish_until(broker, started + 60, acked, count=BURST)
        else:
            publisher = asyncio.create_task(publish_until(broker, started + seconds * 2, acked))
            await asyncio.sleep(rng.uniform(0.5, 1.0) * seconds)
        acked_before = len(acked)  # PUBACKs that arrived before the signal: the broker had them
        await asyncio.to_thread(broker.stop, signal.SIGTERM if kind == "sigterm" else signal.SIGKILL)
        elapsed = time.monotonic() - started
        store = folder / "mosquitto.db"
        store_bytes = store.stat().st_size if store.exists() else 0
        if kind != "burst":
            await publisher
        broker.start()
        await broker.connectable()
        received = await collect(broker)
        kept = set(acked[:acked_before])
        return Trial(name, kind, len(kept), len(received & kept), len(kept - received),
                     round(acked_before / elapsed), store_bytes)
    finally:
        broker.stop(signal.SIGKILL)


def throughput(folder: Path, name: str, on_changes: bool, interval: int) -> dict[str, Any]:
    """QoS 1 publish rate (mosquitto_pub, one connection) while an offline persistent session's queue
    grows: messages/s for the first THROUGHPUT_N queued messages and for the next THROUGHPUT_N; then the
    time of one full save of that store (a SIGTERM stop writes it once)."""
    shutil.rmtree(folder, ignore_errors=True)
    broker = Broker(folder, on_changes, interval)
    broker.start()
    try:
        asyncio.run(_offline_subscriber(broker))
        rates, queued = [], 0
        for _ in range(2):
            started = time.monotonic()
            cmd = ["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", TOPIC, "-m", "x" * 100,
                   "--repeat", str(THROUGHPUT_N)]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            except subprocess.TimeoutExpired:
                rates.append(f"<{THROUGHPUT_N // 60}")  # did not finish in a minute
                break
            rates.append(str(round(THROUGHPUT_N / (time.monotonic() - started))))
            queued += THROUGHPUT_N
        started = time.monotonic()
        broker.stop(signal.SIGTERM)
        save_s = time.monotonic() - started
        store = (folder / "mosquitto.db").stat().st_size
        return {"config": name, "backlog_0_msgs_per_s": rates[0], "backlog_n_msgs_per_s": rates[-1],
                "queued": queued, "save_ms": round(save_s * 1000), "store_bytes": store}
    finally:
        broker.stop(signal.SIGKILL)


async def _offline_subscriber(broker: Broker) -> None:
    await broker.connectable()
    async with broker.client("loss-sub", clean=False) as sub:
        await sub.subscribe(TOPIC, qos=1)


async def run(work: Path, kills: int, seconds: float, seed: int) -> list[Trial]:
    rng, trials = random.Random(seed), []
    for name, on_changes, interval in CONFIGS:
        for kind in ["stream"] * kills + ["burst"]:
            t = await trial(work / f"{interval}-{on_changes}", name, on_changes, interval, seconds, kind, rng)
            print(f"  {t}", flush=True)
            trials.append(t)
    name, on_changes, interval = CONFIGS[0]
    control = await trial(work / "control", name, on_changes, interval, seconds, "sigterm", rng)
    print(f"  {control}", flush=True)
    return [*trials, control]


def summary(trials: list[Trial]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], list[Trial]] = {}
    for t in trials:
        rows.setdefault((t.config, t.kind), []).append(t)
    return [{
        "config": config, "kind": kind, "stops": len(ts), "acked": sum(t.acked for t in ts),
        "lost": sum(t.lost for t in ts), "lost_max": max(t.lost for t in ts),
        "publish_msgs_per_s": round(sum(t.publish_rate for t in ts) / len(ts)),
        "store_bytes_max": max(t.store_bytes for t in ts),
    } for (config, kind), ts in rows.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=3, help="random-moment SIGKILLs per configuration")
    parser.add_argument("--seconds", type=float, default=4.0, help="the kill comes after 50-100%% of this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 random kill per configuration, 2 s streams")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--throughput-only", action="store_true", help="skip the kill trials")
    args = parser.parse_args(argv)
    if _mosquitto_binary() is None:
        print("needs mosquitto", file=sys.stderr)
        return 2
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # the killed broker's disconnects are expected
    kills, seconds = (1, 2.0) if args.quick else (args.kills, args.seconds)
    with tempfile.TemporaryDirectory(prefix="emwatch-broker-loss-") as tmp:
        rows = [] if args.throughput_only else summary(asyncio.run(run(Path(tmp), kills, seconds, args.seed)))
        rates = [throughput(Path(tmp) / f"rate-{i}", *config) for i, config in enumerate(CONFIGS)]
    print(f"\n{'configuration':34} {'trial':7} {'stops':>5} {'acked':>7} {'lost':>6} {'lost max':>8}"
          f" {'py msg/s':>8}")
    for r in rows:
        print(f"{r['config']:34} {r['kind']:7} {r['stops']:5} {r['acked']:7} {r['lost']:6} {r['lost_max']:8}"
              f" {r['publish_msgs_per_s']:8}")
    print(f"\nQoS 1 msg/s (mosquitto_pub) into an offline persistent session: first {THROUGHPUT_N} queued,"
          f" next {THROUGHPUT_N}; then one full save (SIGTERM) of what is queued")
    for r in rates:
        print(f"{r['config']:34} {r['backlog_0_msgs_per_s']:>8} {r['backlog_n_msgs_per_s']:>8}"
              f" {r['queued']:>7} queued {r['store_bytes']:>9} B saved in {r['save_ms']:>5} ms")
    if args.json:
        args.json.write_text(json.dumps({"kills": rows, "throughput": rates}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
