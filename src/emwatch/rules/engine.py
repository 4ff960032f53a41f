"""The rule engine: resolves a batch's devices, indexes fixes with H3, and runs every rule over it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
from numpy.typing import NDArray

from emwatch.geo.cell_memo import anchors, memo_cells
from emwatch.ingest.batcher import IngestBatch
from emwatch.ingest.decode import DeadLetter
from emwatch.ingest.protocol import SOURCE_NAMES, DeviceEvent
from emwatch.kernel_threads import KernelThreads, check_pool
from emwatch.model import FixBatch, FixColumns, Observations
from emwatch.registry import Registry
from emwatch.rules.accuracy import accuracy_m
from emwatch.rules.batch_order import device_time_order
from emwatch.rules.catalog import PERMIT_OVERDUE
from emwatch.rules.containment import evaluate_containment
from emwatch.rules.containment_pairs import registry_columns
from emwatch.rules.curfew import curfew_checks, subject_bracelets
from emwatch.rules.device_events import evaluate_device_events
from emwatch.rules.device_lookup import DeviceLookup
from emwatch.rules.fix_history import FixHistory
from emwatch.rules.movement import anomaly_checks, suspect_fixes
from emwatch.rules.pair_rounds import device_groups, rounds
from emwatch.rules.pair_state import PairState
from emwatch.rules.proximity import ProximityConfig, evaluate_proximity
from emwatch.rules.reorder import late_checks
from emwatch.rules.separation import SeparationConfig, evaluate_separation, separation_tick
from emwatch.rules.signal import heard_from, signal_checks, silence_limits_ms

NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Rule parameters that do not depend on the registry."""

    h3_resolution: int = 9
    max_speed_kmh: float = 250.0
    silence_limit_s: tuple[tuple[str, float], ...] = (("high", 300.0), ("medium", 900.0), ("low", 1800.0))
    separation: SeparationConfig = field(default_factory=SeparationConfig)
    proximity: ProximityConfig = field(default_factory=ProximityConfig)
    reorder_horizon_s: float = 300.0  # late fixes this far behind their device's newest are replayed
    kernel_threads: int = 1  # threads the compiled hot path (ids, H3 cells, containment) splits a batch over


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the rules made of one batch: fixes to store, checks to turn into episodes."""

    batch: FixBatch
    events: list[tuple[str, DeviceEvent, bytes]]
    dead: list[DeadLetter]
    observations: Observations
    late_observations: Observations  # zone checks of fixes older than their device's watermark


_DEVICE_ARRAYS = (
    "last_ts", "last_seen", "last_lat", "last_lon", "last_acc", "last_src", "last_pos_ts", "history_from",
    "cell_anchor",
)


class DeviceState:
    """Per-device state as arrays indexed by the registry's dense device number."""

    def __init__(self, n: int) -> None:
        self.last_ts = np.full(n, NEVER, dtype=np.int64)  # newest fix evaluated
        self.last_seen = np.full(n, NEVER, dtype=np.int64)  # newest fix or event of any kind
        self.last_lat = np.full(n, np.nan)  # newest trusted position
        self.last_lon = np.full(n, np.nan)
        self.last_acc = np.full(n, np.nan)  # its error radius (m): the next fix's speed test allows for it
        self.last_src = np.zeros(n, dtype=np.int8)  # its source (a cell-tower fix confirms nothing)
        self.last_pos_ts = np.full(n, NEVER, dtype=np.int64)
        # The fix history (rules/reorder.py) holds every fix of the device newer than this: NEVER
        # unless restored after a restart, when what came before is only in the database.
        self.history_from = np.full(n, NEVER, dtype=np.int64)
        self.cell_anchor = anchors(n)  # the device's last computed cell and how far a fix may stay in it

    def remapped(self, old_index: dict[str, int], new_ids: list[str]) -> DeviceState:
        """The same state for a new registry's device numbering (new devices start empty)."""
        out = DeviceState(len(new_ids))
        pairs = [(n, o) for n, d in enumerate(new_ids) if (o := old_index.get(d)) is not None]
        if pairs:
            to = np.array([p[0] for p in pairs], dtype=np.intp)
            source = np.array([p[1] for p in pairs], dtype=np.intp)
            for name in _DEVICE_ARRAYS:
                getattr(out, name)[to] = getattr(self, name)[source]
        return out


class RuleEngine:
    """Holds the registry snapshot and device state; `evaluate` runs per batch, `tick` on a timer."""

    def __init__(self, registry: Registry, config: RuleConfig | int = RuleConfig()) -> None:
        self.config = config if isinstance(config, RuleConfig) else RuleConfig(h3_resolution=config)
        self.h3_resolution = self.config.h3_resolution
        self.threads = KernelThreads(self.config.kernel_threads)
        check_pool(self.threads)
        self.history = FixHistory(int(self.config.reorder_horizon_s * 1000), self.h3_resolution)
        self._install(registry, DeviceState(len(registry.device_ids)))
        separation = self.config.separation
        self.pairs = PairState(  # separation and proximity state, carried by id on reload
            registry, separation.move_m, int(separation.diverge_s * 1000), self.config.proximity.h3_resolution
        )
        self._groups = device_groups(registry, self.pairs)

    def _install(self, registry: Registry, state: DeviceState) -> None:
        self.registry, self.state = registry, state
        self.devices = DeviceLookup.build(registry.device_ids, registry.device_index)
        self._last_resolved: tuple[Sequence[str], DeviceLookup, NDArray[np.int32]] | None = None
        registry_columns(registry)  # the containment kernel's view of it, made now rather than on a batch
        self._silence_ms = silence_limits_ms(registry, dict(self.config.silence_limit_s))
        self._bracelet = subject_bracelets(registry)
        # Per curfew pair, the fix the clock last judged it on (a new registry judges it once more).
        self._curfew_judged = np.full(len(registry.scheduled_inclusion_pairs()[0]), NEVER, dtype=np.int64)
        self._returned: dict[int, bool] = getattr(self, "_returned", {})  # permit id → back inside since

    @property
    def last_ts(self) -> NDArray[np.int64]:
        return self.state.last_ts

    def replace_registry(self, registry: Registry) -> None:
        """Swap in a new snapshot, carrying each device's state over by its id."""
        self.pairs = self.pairs.remapped(registry)
        new_index = registry.device_index
        self.history.remap(np.array([new_index.get(d, -1) for d in self.registry.device_ids], np.int32))
        self._install(registry, self.state.remapped(self.registry.device_index, registry.device_ids))
        self._groups = device_groups(registry, self.pairs)

    def unknown_devices(self, batch: IngestBatch) -> set[str]:
        """Device ids in the batch that the current registry does not know."""
        device = self._resolved(batch.fixes.device_ids)
        ids = {batch.fixes.device_ids[i] for i in np.flatnonzero(device < 0).tolist()}
        index = self.registry.device_index
        ids.update(d for d, _, _ in batch.events if d not in index)
        return ids

    def _resolved(self, ids: Sequence[str]) -> NDArray[np.int32]:
        """Dense index of each id (-1: unknown), by the current registry. Remembered for the last list
        resolved: the pipeline asks `unknown_devices` of a batch, then `evaluate`s it."""
        last = self._last_resolved
        if last is not None and last[0] is ids and last[1] is self.devices:
            return last[2]
        device = self.devices.resolve(ids, self.threads)
        self._last_resolved = (ids, self.devices, device)
        return device

    def evaluate(
        self, batch: IngestBatch, open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]]
    ) -> Evaluation:
        """Run the rules over one batch; fixes of unknown devices become dead letters."""
        registry, state = self.registry, self.state
        index = registry.device_index
        cols = batch.fixes
        device = self._resolved(cols.device_ids)
        dead = list(batch.dead)
        known = device >= 0
        if not known.all():
            for i in np.flatnonzero(~known).tolist():
                topic = f"em/v1/devices/{cols.device_ids[i]}/fix"
                dead.append(DeadLetter(topic, _fix_json(cols, i), "unknown device"))
        events = []
        for device_id, event, raw in batch.events:
            if device_id in index:
                events.append((device_id, event, raw))
            else:
                dead.append(DeadLetter(f"em/v1/devices/{device_id}/event", raw, "unknown device"))

        # Event-time order per device, so a burst of buffered fixes is read as it happened.
        rows = device_time_order(np.flatnonzero(known), device, cols.ts)
        fixes = cols.take(rows)
        device = device[rows]
        watermark = state.last_ts[device]
        fresh = fixes.ts > watermark
        cells = memo_cells(fixes.lat, fixes.lon, device, state.cell_anchor, self.h3_resolution, self.threads)
        staged = FixBatch(
            fixes=fixes, device=device, subject=registry.device_subject[device], cell=cells, fresh=fresh,
            suspect=np.zeros(len(device), dtype=bool),
        )
        radius = accuracy_m(fixes.acc, fixes.src)
        suspect = suspect_fixes(
            staged, radius, state.last_lat, state.last_lon, state.last_pos_ts, state.last_acc,
            self.config.max_speed_kmh / 3.6,
        )
        fix_batch = FixBatch(staged.fixes, staged.device, staged.subject, staged.cell, staged.fresh, suspect,
                             subject_ids=registry.subject_ids, device_ids=registry.device_ids)
        event_device = np.array([index[d] for d, _, _ in events], dtype=np.int32)
        event_ts = np.array([e.ts for _, e, _ in events], dtype=np.int64)
        pair_checks = self._pair_rules(fix_batch, radius, events, event_device, event_ts)
        observations = Observations.concat([
            self._permit_checks(
                evaluate_containment(
                    registry, fix_batch, open_pairs, self._permit_returned(), threads=self.threads
                )
            ),
            evaluate_device_events(registry, events),
            anomaly_checks(fix_batch, suspect, registry.device_wearable),
            pair_checks,
            heard_from(
                registry, np.concatenate([device, event_device]), np.concatenate([fixes.ts, event_ts])
            ),
        ])
        # Fixes behind the device's watermark (last_ts before this batch) are judged at their own
        # timestamps, replayed with their device's recent fixes (rules/reorder.py): a buffered burst
        # can reveal a missed violation without flipping the current state back and forth.
        late = late_checks(
            registry, self.history, fix_batch, watermark, state.history_from[device], open_pairs,
            self._permit_returned(),
        )
        return Evaluation(
            batch=fix_batch, events=events, dead=dead, observations=observations, late_observations=late
        )

    def _pair_rules(
        self, batch: FixBatch, radius: NDArray[np.float64], events: list[tuple[str, DeviceEvent, bytes]],
        event_device: NDArray[np.int32], event_ts: NDArray[np.int64],
    ) -> Observations:
        """Take the batch into the device state, and run the two-device rules round by round
        (rules/pair_rounds.py): their checks come out as if fixes and events had come one at a time."""
        n = len(batch)
        item_round = rounds(
            np.concatenate([self._groups[batch.device], self._groups[event_device]]),
            np.concatenate([batch.fixes.ts, event_ts]),
        )
        checks = []
        for k in range(int(item_round.max(initial=0)) + 1):
            if item_round.max(initial=0) == 0:
                sub, sub_radius, sub_events = batch, radius, events
            else:
                idx = np.flatnonzero(item_round[:n] == k)
                sub = FixBatch(
                    batch.fixes.take(idx), batch.device[idx], batch.subject[idx], batch.cell[idx],
                    batch.fresh[idx], batch.suspect[idx],
                )
                sub_radius = radius[idx]
                sub_events = [e for e, r in zip(events, item_round[n:].tolist(), strict=True) if r == k]
            self._remember(sub, sub_radius, sub_events)
            self.pairs.observe(sub, sub_radius, sub_events)
            checks += [
                evaluate_separation(
                    self.registry, self.pairs, sub, sub_events, self.config.separation, self.state.last_seen
                ),
                evaluate_proximity(self.registry, self.pairs, sub, self.config.proximity),
            ]
        return Observations.concat(checks)

    def seed(
        self, positions: Sequence[tuple[str, int, float, float] | tuple[str, int, float, float, float]]
    ) -> None:
        """Restore each device's newest fix (device id, ts ms, lat, lon[, error radius m]) after a restart.

        Without the radius (NaN or left out) the restored fix counts as exact for the next speed test.
        """
        state, index = self.state, self.registry.device_index
        for position in positions:
            device_id, ts, lat, lon = position[:4]
            d = index.get(device_id)
            if d is not None and ts > state.last_ts[d]:
                state.last_ts[d] = state.last_seen[d] = state.last_pos_ts[d] = state.history_from[d] = ts
                state.last_lat[d], state.last_lon[d] = lat, lon
                state.last_acc[d] = position[4] if len(position) > 4 else np.nan

    def _permit_returned(self) -> NDArray[np.bool_]:
        ids = self.registry.permits.ids.tolist()
        return np.array([self._returned.get(i, False) for i in ids], dtype=bool)

    def _permit_checks(self, obs: Observations) -> Observations:
        """Remember permits whose subject has been seen back inside (overdue checks that comply)."""
        back = np.flatnonzero((obs.rule == PERMIT_OVERDUE) & ~obs.breach)
        if len(back):
            permits = self.registry.permits
            for p in permits.latest_started(obs.subject[back], obs.ts[back]).tolist():
                if p >= 0:
                    self._returned[int(permits.ids[p])] = True
        return obs

    def _remember(
        self, batch: FixBatch, radius: NDArray[np.float64], events: list[tuple[str, DeviceEvent, bytes]]
    ) -> None:
        state, f = self.state, batch.fixes
        if len(batch):
            np.maximum.at(state.last_ts, batch.device, f.ts)
            np.maximum.at(state.last_seen, batch.device, f.ts)
            # Last trusted fresh fix per device (rows are sorted by device, ts: the last row wins).
            ok = np.flatnonzero(batch.fresh & ~batch.suspect)
            state.last_lat[batch.device[ok]] = f.lat[ok]
            state.last_lon[batch.device[ok]] = f.lon[ok]
            state.last_acc[batch.device[ok]] = radius[ok]
            state.last_src[batch.device[ok]] = f.src[ok]
            state.last_pos_ts[batch.device[ok]] = f.ts[ok]
        for device_id, event, _ in events:
            d = self.registry.device_index[device_id]
            state.last_seen[d] = max(state.last_seen[d], event.ts)

    def tick(self, now_ms: int) -> Observations:
        """Timer rules over every device at once: 脱管 (signal_lost), curfews and 人机分离."""
        state = self.state
        return Observations.concat([
            signal_checks(self.registry, state.last_seen, self._silence_ms, now_ms),
            # A position is as good as the bracelet's silence limit allows: older, it proves nothing.
            curfew_checks(
                self.registry, self._bracelet,
                (state.last_lat, state.last_lon, state.last_acc, state.last_src, state.last_pos_ts),
                self._silence_ms, now_ms, self._curfew_judged,
            ),
            separation_tick(self.registry, self.pairs, now_ms, self.config.separation, state.last_seen),
        ])


def _fix_json(cols: FixColumns, i: int) -> bytes:
    """Re-encode one decoded fix for the dead-letter table (its raw bytes are gone by now)."""
    acc = float(cols.acc[i])
    return orjson.dumps({
        "dev": cols.device_ids[i], "ts": int(cols.ts[i]), "lat": float(cols.lat[i]),
        "lon": float(cols.lon[i]), "acc": None if acc != acc else acc, "src": SOURCE_NAMES[int(cols.src[i])],
    })
