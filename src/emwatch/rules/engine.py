"""The rule engine: resolves a batch's devices, indexes fixes with H3, and runs every rule over it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
from numpy.typing import NDArray

from emwatch.geo.cells import cells_for
from emwatch.ingest.batcher import IngestBatch
from emwatch.ingest.decode import DeadLetter
from emwatch.ingest.protocol import SOURCE_NAMES, DeviceEvent
from emwatch.model import FixBatch, FixColumns, Observations
from emwatch.registry import Registry
from emwatch.rules.containment import evaluate_containment

NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the rules made of one batch: fixes to store, observations to turn into episodes."""

    batch: FixBatch
    events: list[tuple[str, DeviceEvent, bytes]]
    dead: list[DeadLetter]
    observations: Observations


class RuleEngine:
    """Holds the registry snapshot and per-device state (latest evaluated fix time) as arrays."""

    def __init__(self, registry: Registry, h3_resolution: int) -> None:
        self.registry = registry
        self.h3_resolution = h3_resolution
        self.last_ts = np.full(len(registry.device_ids), NEVER, dtype=np.int64)

    def replace_registry(self, registry: Registry) -> None:
        """Swap in a new snapshot, carrying each device's state over by its id."""
        old_index = self.registry.device_index
        last_ts = np.full(len(registry.device_ids), NEVER, dtype=np.int64)
        for new_idx, device_id in enumerate(registry.device_ids):
            old_idx = old_index.get(device_id)
            if old_idx is not None:
                last_ts[new_idx] = self.last_ts[old_idx]
        self.registry, self.last_ts = registry, last_ts

    def unknown_devices(self, batch: IngestBatch) -> set[str]:
        """Device ids in the batch that the current registry does not know."""
        index = self.registry.device_index
        ids = {d for d in batch.fixes.device_ids if d not in index}
        ids.update(d for d, _, _ in batch.events if d not in index)
        return ids

    def evaluate(
        self, batch: IngestBatch, open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]]
    ) -> Evaluation:
        """Run the rules over one batch; fixes of unknown devices become dead letters."""
        registry = self.registry
        index = registry.device_index
        cols = batch.fixes
        device = np.fromiter((index.get(d, -1) for d in cols.device_ids), dtype=np.int32, count=len(cols))
        dead = list(batch.dead)
        known = device >= 0
        if not known.all():
            for i in np.flatnonzero(~known).tolist():
                dead.append(DeadLetter(f"em/v1/devices/{cols.device_ids[i]}/fix", _fix_json(cols, i),
                                       "unknown device"))
        events = []
        for device_id, event, raw in batch.events:
            if device_id in index:
                events.append((device_id, event, raw))
            else:
                dead.append(DeadLetter(f"em/v1/devices/{device_id}/event", raw, "unknown device"))

        # Event-time order per device, so a burst of buffered fixes is read as it happened.
        rows = np.flatnonzero(known)
        order = np.lexsort((cols.ts[rows], device[rows]))
        rows = rows[order]
        fixes = cols.take(rows)
        device = device[rows]
        fresh = fixes.ts > self.last_ts[device]
        if len(device):
            np.maximum.at(self.last_ts, device, fixes.ts)
        fix_batch = FixBatch(
            fixes=fixes,
            device=device,
            subject=registry.device_subject[device],
            cell=cells_for(fixes.lat, fixes.lon, self.h3_resolution),
            fresh=fresh,
        )
        observations = evaluate_containment(registry, fix_batch, open_pairs)
        return Evaluation(batch=fix_batch, events=events, dead=dead, observations=observations)


def _fix_json(cols: FixColumns, i: int) -> bytes:
    """Re-encode one decoded fix for the dead-letter table (its raw bytes are gone by now)."""
    acc = float(cols.acc[i])
    return orjson.dumps({
        "dev": cols.device_ids[i], "ts": int(cols.ts[i]),
        "lat": float(cols.lat[i]), "lon": float(cols.lon[i]),
        "acc": None if acc != acc else acc, "src": SOURCE_NAMES[int(cols.src[i])],
    })
