"""End to end through real Mosquitto and PostgreSQL: fixed-rate load, sustained throughput, alert latency."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import psutil
import websockets
from infra import Service, cpu_seconds, private_mosquitto, private_postgres, process_tree, seed
from scene import Scene, build_scene
from startup import scene_key

from emwatch.store.db import migrate

SCENE_SEED = 11
SEEDED_ROOT = Path(".emwatch/e2e-pg")
TEMPLATE_MIN_SUBJECTS = 100_000  # from here a seeded cluster is kept and copied (cp -a: seconds)
PROBE_EVERY = 200  # one device in 200 flips in and out of its own exclusion zone: every fix of it alerts
LOADGEN = Path(__file__).with_name("loadgen.py")


@dataclass
class Step:
    shape: str
    target: float  # fixes/s
    published: int
    stored: int  # during the publishing window
    seconds: float
    backlog_end: int  # published but not yet stored when publishing stopped
    drain_s: float
    latencies_ms: list[float]
    cpu: dict[str, float]  # share of one core, per party
    rss_mb: dict[str, float]
    # CPU µs per fix stored, per party: CPU seconds up to the end of the drain over the fixes stored by then
    # (a rate that contention from other processes on the machine changes far less than fixes/s)
    cpu_us_per_fix: dict[str, float] = field(default_factory=dict)
    # share of the step (publishing + drain) the service's writers spent in write transactions, less their
    # waits for the transaction before (up to the number of writers, store/committer.py)
    committer_busy: float | None = None
    # the same per phase of a transaction (encode, queue, fixes, rows, turn, alerts, commit), waits included;
    # and the share of the step the service's GC stood still per generation (gc0, gc1, gc2), and how
    # many collections (gc0_n ...)
    commit_phases: dict[str, float] = field(default_factory=dict)

    @property
    def sustained(self) -> bool:
        """Publisher kept the rate and the service kept up: under 0.5 s of fixes in backlog when publishing
        stopped, all drained soon after, and alerts not queued for seconds (median under 1 s)."""
        p50 = self.percentile(50)
        return (self.published >= 0.95 * self.target * self.seconds
                and self.backlog_end <= self.target * 0.5 and self.drain_s < 5
                and (p50 is None or p50 < 1000))

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def row(self) -> dict[str, object]:
        return {
            "shape": self.shape, "target_fixes_per_s": self.target,
            "achieved_fixes_per_s": round(self.stored / self.seconds), "backlog_end": self.backlog_end,
            "drain_s": round(self.drain_s, 2),
            "sustained": self.sustained, "alerts": len(self.latencies_ms),
            "p50_ms": self.percentile(50), "p95_ms": self.percentile(95), "p99_ms": self.percentile(99),
            "cpu_cores": self.cpu, "cpu_us_per_fix": self.cpu_us_per_fix, "rss_mb": self.rss_mb,
            "committer_busy": self.committer_busy, "commit_phases": self.commit_phases,
        }


@dataclass
class E2EResult:
    subjects: int
    startup_s: float
    steps: list[Step] = field(default_factory=list)
    # the warm-up's second report of every device: the first sightings' breaches open together (a zone
    # alert opens on the second breaching fix), tens of thousands of alerts within seconds
    burst: Step | None = None
    burst_quiet_s: float = 0.0  # how long the feed went on after the burst step had drained
    feed_resumes: list[int] = field(default_factory=list)  # seqs the feed client resumed after (1013)

    def max_sustained(self, shape: str) -> Step | None:
        ok = [s for s in self.steps if s.shape == shape and s.sustained]
        return max(ok, key=lambda s: s.target) if ok else None


def positions(scene: Scene, path: Path, seed: int = 3) -> None:
    """Where each device reports from: outside its own zones; probes alternate in/out of one."""
    rng = np.random.default_rng(seed)
    n = scene.n_subjects
    xy = scene.anchor + rng.choice([-1, 1], (n, 2)) * 0.02  # own zones lie within ~0.015° of the anchor
    probe_in = np.full((n, 2), np.nan)
    probe_out = np.full((n, 2), np.nan)
    first_own = {z.subject_id: z for z in reversed(scene.zones) if z.subject_id is not None}
    for s in range(0, n, PROBE_EVERY):
        z = first_own[scene.subjects[s].id]
        inside = z.geometry if z.radius_m is not None else z.geometry.representative_point()
        probe_in[s] = inside.coords[0]
        probe_out[s] = xy[s]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, lon=xy[:, 0], lat=xy[:, 1], probe_in=probe_in, probe_out=probe_out)


async def _feed(url: str, protocols: list[str], sink: list[tuple[float, float]], stop: asyncio.Event,
                resumes: list[int]) -> None:
    """(received_at, latency_ms) of every alert event on the WebSocket feed, taken in arrays
    (frames=batch); a client cut off for falling behind resumes after the last seq it holds (`resumes`)."""
    offered = [websockets.Subprotocol(p) for p in protocols]
    last: int | None = None
    while not stop.is_set():
        query = "?frames=batch" + (f"&since={last}" if last is not None else "")
        async with websockets.connect(url + query, max_size=None, subprotocols=offered) as ws:
            try:
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    now = time.time() * 1000
                    events = orjson.loads(raw)
                    sink.extend((now, now - ev["ts"]) for ev in events)
                    last = events[-1]["seq"]
            except websockets.ConnectionClosedError as closed:
                if closed.rcvd is None or closed.rcvd.code != 1013:
                    raise
                resumes.append(last or 0)


async def _quiet(feed: list[tuple[float, float]], quiet_s: float, limit_s: float) -> float:
    """Wait until no alert has arrived for `quiet_s` (at most `limit_s`); the seconds waited."""
    t0 = time.monotonic()
    seen, still = len(feed), time.monotonic()
    while time.monotonic() - t0 < limit_s:
        await asyncio.sleep(0.1)
        if len(feed) != seen:
            seen, still = len(feed), time.monotonic()
        elif time.monotonic() - still >= quiet_s:
            break
    return time.monotonic() - t0


async def _step(svc: Service, http: httpx.AsyncClient, ports: tuple[int, Path], shape: str, rate: float,
                seconds: float, parties: dict[str, list[psutil.Process]], feed: list[tuple[float, float]],
                procs_n: int, label: str | None = None) -> Step:
    stored0 = await svc.counter(http, "emwatch_fixes_stored_total")
    commit0 = await svc.counter(http, "emwatch_commit_seconds_sum")
    phases0 = await _service_counters(svc, http)
    cpu0 = {k: cpu_seconds(v) for k, v in parties.items()}
    feed_from = len(feed)
    t0 = time.monotonic()
    cmd = [str(LOADGEN), "--port", str(ports[0]), "--positions", str(ports[1]), "--shape", shape,
           "--rate", str(rate / procs_n), "--seconds", str(seconds), "--parts", str(procs_n)]
    loads = [await asyncio.create_subprocess_exec(sys.executable, *cmd, "--part", str(k),
                                                  stdout=asyncio.subprocess.PIPE) for k in range(procs_n)]
    outputs = asyncio.gather(*(p.communicate() for p in loads))
    rss: dict[str, float] = {}
    while not outputs.done():
        await asyncio.sleep(0.5)
        for k, v in parties.items():
            rss[k] = max(rss.get(k, 0.0), sum(_rss(p) for p in v) / 2**20)
    reports = [json.loads(out) for out, _ in await outputs]
    stored_end = await svc.counter(http, "emwatch_fixes_stored_total")
    wall = time.monotonic() - t0
    published = sum(r["fixes"] for r in reports)
    backlog_end = max(0, int(published - (stored_end - stored0)))
    t_drain = time.monotonic()
    while await svc.counter(http, "emwatch_fixes_stored_total") - stored0 < published:
        if time.monotonic() - t_drain > 10:
            break
        await asyncio.sleep(0.1)
    drain_s = time.monotonic() - t_drain
    await asyncio.sleep(0.3)  # alerts of the last batches reach the feed
    # the parties' CPU includes the drain, so it is divided by the time up to now, not the publishing time
    busy = time.monotonic() - t0
    used = {k: cpu_seconds(v) - cpu0[k] for k, v in parties.items()}
    cpu = {k: round(s / busy, 2) for k, s in used.items()}
    cpu["publishers"] = round(sum(r["cpu_s"] for r in reports) / wall, 2)
    drained = max(1.0, await svc.counter(http, "emwatch_fixes_stored_total") - stored0)
    per_fix = {k: round(s / drained * 1e6, 2) for k, s in used.items()}
    per_fix["publishers"] = round(sum(r["cpu_s"] for r in reports) / max(published, 1) * 1e6, 2)
    committer_busy = round((await svc.counter(http, "emwatch_commit_seconds_sum") - commit0) / busy, 2)
    phases1 = await _service_counters(svc, http)
    # shares of the step's time, but the GC's pause counts as they are
    phases = {k: round((v - phases0.get(k, 0.0)) / (1.0 if k.endswith("_n") else busy), 3)
              for k, v in phases1.items()}
    lat = [ms for _, ms in feed[feed_from:]]
    pub_s = max(r["seconds"] for r in reports)
    return Step(label or shape, rate, published, int(stored_end - stored0), pub_s, backlog_end, drain_s, lat,
                cpu, {k: round(v) for k, v in rss.items()}, per_fix, committer_busy, phases)


async def _service_counters(svc: Service, http: httpx.AsyncClient) -> dict[str, float]:
    """The service's counters behind a step's `commit_phases`: seconds its write transactions spent in
    each phase so far (emwatch_commit_phase_seconds), and its garbage collector's pauses
    (`gc<generation>`: seconds, `gc<generation>_n`: how many)."""
    text = (await http.get(f"{svc.base}/metrics")).text
    found = _by_label(text, 'emwatch_commit_phase_seconds_total{phase="')
    found |= {f"gc{k}": v for k, v in _by_label(text, 'emwatch_gc_pause_seconds_sum{generation="').items()}
    counts = _by_label(text, 'emwatch_gc_pause_seconds_count{generation="')
    found |= {f"gc{k}_n": v for k, v in counts.items()}
    return found


def _by_label(text: str, prefix: str) -> dict[str, float]:
    return {line[len(prefix):].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(prefix)}


def _rss(p: psutil.Process) -> int:
    try:
        return int(p.memory_info().rss)
    except psutil.Error:
        return 0


async def _seeded_template(scene: Scene, subjects: int) -> Path | None:
    """For a large scene, a stopped cluster seeded with it once (minutes at 700k) and kept under
    .emwatch/e2e-pg for later runs to copy; None for small scenes (seeded afresh each run)."""
    if subjects < TEMPLATE_MIN_SUBJECTS:
        return None
    key = scene_key(subjects, SCENE_SEED)
    template, done = SEEDED_ROOT / key, SEEDED_ROOT / f"{key}.seeded"
    if not done.exists():
        await asyncio.to_thread(_forget_templates, subjects)  # other scene versions, or a half-seeded one
        with private_postgres(template) as (dsn, _pid):
            await seed(dsn, scene)
        done.touch()
    return template


def _forget_templates(subjects: int) -> None:
    for stale in SEEDED_ROOT.glob(f"{subjects}-*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()


async def run_e2e(workdir: Path, subjects: int, ladders: dict[str, list[float]], seconds: float,
                  procs_n: int = 2, log: Callable[[object], None] = print, uvloop: bool = False) -> E2EResult:
    """Seed, start the service, then climb each shape's rate ladder until a step is not sustained."""
    scene = build_scene(subjects, seed=SCENE_SEED)
    pos_file = workdir / "positions.npz"
    positions(scene, pos_file)
    seeded = await _seeded_template(scene, subjects)
    if seeded is not None:
        copy = ["cp", "-a", str(seeded), str(workdir / "pg")]  # -a: the cluster's owner too
        await asyncio.to_thread(subprocess.run, copy, check=True)
    with private_postgres(workdir / "pg") as (dsn, pg_pid), \
            private_mosquitto(workdir / "mqtt") as (mqtt, mq_pid):
        await (migrate(dsn) if seeded is not None else seed(dsn, scene))
        svc = Service(dsn, mqtt, workdir, uvloop=uvloop)
        try:
            startup = await svc.ready()
            result = E2EResult(subjects, startup)
            feed: list[tuple[float, float]] = []
            stop = asyncio.Event()
            protocols = await svc.feed_subprotocols()
            feeder = asyncio.create_task(_feed(f"ws://127.0.0.1:{svc.port}/ws/alerts", protocols, feed, stop,
                                               result.feed_resumes))
            port = int(mqtt.rsplit(":", 1)[1])
            # 60 s: the first batches may wait for numba to compile a kernel the cache lacks
            async with httpx.AsyncClient(timeout=60) as http:
                parties = {"service": process_tree(svc.proc.pid), "broker": process_tree(mq_pid),
                           "postgres": process_tree(pg_pid)}
                # warm-up: every device reports twice, so the ladders measure the steady state, not the
                # first sightings (at most 70k fixes/s, the design point: 10 s a report for 700k devices).
                # Breaches pend on the first report and open on the second: that report is the alert
                # burst, measured as a step of its own.
                warm = min(subjects / 2, 70_000.0)
                warm_s = max(2.0, subjects / warm)
                await _step(svc, http, (port, pos_file), "batch", warm, warm_s, parties, feed, 1)
                result.burst = await _step(svc, http, (port, pos_file), "batch", warm, warm_s, parties, feed,
                                           1, label="burst")
                log(result.burst.row())
                result.burst_quiet_s = max(0.0, await _quiet(feed, 2.0, 120.0) - 2.0)
                for shape, ladder in ladders.items():
                    await asyncio.sleep(2.0)  # let the previous shape's overload drain away
                    for rate in ladder:
                        # A failed step is tried once more: on a shared machine one stall is no ceiling.
                        for _ in range(2):
                            parties["postgres"] = process_tree(pg_pid)
                            step = await _step(svc, http, (port, pos_file), shape, rate, seconds, parties,
                                               feed, procs_n)
                            result.steps.append(step)
                            log(step.row())
                            if step.sustained:
                                break
                            await asyncio.sleep(2.0)
                        if not step.sustained:
                            break
            stop.set()
            await feeder
            return result
        finally:
            svc.stop()
