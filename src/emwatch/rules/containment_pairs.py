"""(fix, zone) containment checks of a batch: the compiled walk, then the few pairs it leaves to numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.geo.cells import compact_key_bits
from emwatch.geo.zone_index import ZoneIndex
from emwatch.kernel_threads import SERIAL, KernelThreads
from emwatch.model import FixBatch
from emwatch.registry import Registry
from emwatch.rules.accuracy import DEFAULT_ACCURACY_M, SRC_LBS, accuracy_m, classify
from emwatch.rules.catalog import CURFEW_VIOLATION, ZONE_ENTRY, ZONE_EXIT
from emwatch.rules.containment_geometry import NEEDS_CONTAINS, NEEDS_REFERENCE, banded_polygons
from emwatch.rules.containment_kernel import BAD_CELL, answer_pairs, key_map, key_set, zone_records
from emwatch.rules.containment_listing import containment_pairs

_DIGIT_BITS, _MAX_RES = 3, 15  # geo.cells' H3 layout: compact_cell_key's shift


def zone_rule(registry: Registry, zone: NDArray[np.int32]) -> NDArray[np.int16]:
    """The rule a zone enforces: curfew for a scheduled inclusion zone, else exit/entry by kind."""
    inclusion = registry.zones.kind_is_inclusion[zone]
    curfew = inclusion & registry.schedules.scheduled[zone]
    return np.where(curfew, CURFEW_VIOLATION, np.where(inclusion, ZONE_EXIT, ZONE_ENTRY)).astype(np.int16)


@dataclass(frozen=True, slots=True, eq=False)
class RegistryColumns:
    """The registry's arrays as the kernel takes them, and per-zone facts derived once per registry."""

    registry: Registry
    registry_cols: tuple[Any, ...]
    permit_cols: tuple[Any, ...]
    zone_cols: tuple[Any, ...]
    ring_cols: tuple[Any, ...]
    key_cols: tuple[Any, ...]
    rule: NDArray[np.int16]  # the rule each zone enforces (zone_rule)
    any_scheduled: bool
    any_destination: bool
    any_buffer: bool

    @classmethod
    def of(cls, registry: Registry) -> RegistryColumns:
        z, rings, permits = registry.zones, registry.zones.rings, registry.permits
        res = z.resolution
        inclusion = z.kind_is_inclusion
        rule = zone_rule(registry, np.arange(len(inclusion), dtype=np.int32))
        shift = np.int64(1) << np.int64(42)  # PermitTable.latest_started's key
        ring, banded = _banded(z)
        return cls(
            registry=registry,
            registry_cols=(
                registry.device_wearable, registry.pair_start, registry.pair_zone, z.cover_cells,
                key_map(z.cover_cells), z.cover_zone, registry.shared_mask, registry.zone_jurisdiction,
                registry.subject_ancestors, np.asarray(DEFAULT_ACCURACY_M, dtype=np.float64),
            ),
            permit_cols=(
                permits.subject, permits.subject.astype(np.int64) * shift + permits.starts, permits.ends,
                permits.zone_start, permits.zone,
            ),
            zone_cols=(
                zone_records(inclusion, z.is_circle, (z.min_lon, z.min_lat, z.max_lon, z.max_lat),
                             z.centre_lat, z.centre_lon, z.radius_m, ring),
                key_set(z.interior_keys),
            ),
            ring_cols=(rings.ring_start, rings.coord_start, rings.x, rings.y, banded),
            key_cols=(
                np.uint64(res), np.uint64(compact_key_bits(res)), np.uint64(_DIGIT_BITS * (_MAX_RES - res)),
                np.uint64((1 << compact_key_bits(res)) - 1),
            ),
            rule=rule,
            any_scheduled=bool(registry.schedules.scheduled.any()),
            any_destination=bool(registry.permit_destination.any()),
            any_buffer=bool((~np.isnan(registry.zone_buffer_m)).any()),
        )


def _banded(zones: ZoneIndex) -> tuple[NDArray[np.int32], tuple[NDArray[Any], ...]]:
    """The ring column pair_answer takes (-2 - row for a banded polygon) and the BandedPolygons of the
    zones GEOS would answer that can be: valid polygons without holes (a county)."""
    ring = zones.ring_of.copy()
    geoms = zones.geometries
    shapely_zone = np.flatnonzero(~zones.is_circle & (ring < 0))
    g = geoms[shapely_zone]
    fits = (shapely.get_type_id(g) == 3) & (shapely.get_num_interior_rings(g) == 0) & shapely.is_valid(g)
    rows = shapely_zone[fits]
    ring[rows] = -2 - np.arange(len(rows), dtype=np.int32)
    return ring, banded_polygons(g[fits])


_latest: list[RegistryColumns] = []  # one registry at a time: the engine's current snapshot


def registry_columns(registry: Registry) -> RegistryColumns:
    """RegistryColumns of `registry`, made on first use (RuleEngine makes them when it installs a
    registry) and kept while it is the current one."""
    if _latest and _latest[0].registry is registry:
        return _latest[0]
    cols = RegistryColumns.of(registry)
    _latest[:] = [cols]
    # compile (or load from numba's cache) now, not on the first batch: an empty batch of the real dtypes
    none = np.empty(0, np.int32)
    empty = (none, none, np.empty(0, bool), np.empty(0, bool), np.empty(0, np.uint64), np.empty(0),
             np.empty(0), np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int8))
    answered_pairs(empty, cols, none, none, SERIAL)
    return cols


def answered_pairs(
    fix_cols: tuple[Any, ...], cols: RegistryColumns, open_subject: NDArray[np.int32],
    open_zone: NDArray[np.int32], threads: KernelThreads,
) -> tuple[int, NDArray[np.int64], NDArray[np.int64], NDArray[np.int8], NDArray[np.bool_], NDArray[np.bool_],
           NDArray[np.bool_]]:
    """The kernel's (failed, fix, zone, status, inside, breach, confirmed): pairs listed, then answered,
    each in ranges across `threads`."""
    failed, fix, zone = containment_pairs(
        fix_cols, cols.registry_cols, open_subject, open_zone, cols.permit_cols, cols.key_cols,
        threads.parts(len(fix_cols[0])),
    )
    status, inside, breach, confirmed = answer_pairs(
        fix, zone, fix_cols, cols.registry_cols[-1], cols.zone_cols, cols.ring_cols, cols.key_cols,
        threads.parts(len(fix)),
    )
    return failed, fix, zone, status, inside, breach, confirmed


def pair_checks(
    registry: Registry, batch: FixBatch, open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]],
    threads: KernelThreads = SERIAL,
) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.bool_], NDArray[np.bool_]]:
    """(fix row, zone, breach, confirmed) of every relevant pair, in (fix, zone) order: what
    rules/accuracy.py `classify` says of ZoneIndex `contains` for the pairs containment checks."""
    cols = registry_columns(registry)
    f = batch.fixes
    open_subject = np.asarray(open_pairs[0], dtype=np.int32)
    open_zone = np.asarray(open_pairs[1], dtype=np.int32)
    fix_cols = (
        batch.device, batch.subject, batch.fresh, batch.suspect, batch.cell, f.lon, f.lat, f.ts, f.acc, f.src
    )
    failed, fix, zone64, status, inside, breach, confirmed = answered_pairs(
        fix_cols, cols, open_subject, open_zone, threads
    )
    if failed == BAD_CELL:
        raise ValueError(f"cells must be H3 cells at the index resolution {registry.zones.resolution}")
    if failed:
        raise IndexError("fix source without a default accuracy")
    zone = zone64.astype(np.int32)
    flagged = np.flatnonzero(status)
    if len(flagged):
        _settle(registry, batch, fix, zone, status, inside, breach, confirmed, flagged)
    return fix, zone, breach, confirmed


def _settle(
    registry: Registry, batch: FixBatch, fix: NDArray[np.int64], zone: NDArray[np.int32],
    status: NDArray[np.int8], inside: NDArray[np.bool_], breach: NDArray[np.bool_],
    confirmed: NDArray[np.bool_], flagged: NDArray[np.intp],
) -> None:
    """Answer the pairs the kernel flagged, in place, the numpy way: a prepared geometry's contains_xy
    (and `within_m` for an exit), else (pairs near a rounding limit, or outside a large exclusion
    polygon) ZoneIndex.contains + classify."""
    zones, f = registry.zones, batch.fixes
    at = flagged[status[flagged] == NEEDS_CONTAINS]
    if len(at):
        z, i = zone[at], fix[at]
        inside[at] = within = shapely.contains_xy(zones.geometries[z], f.lon[i], f.lat[i])
        inclusion = zones.kind_is_inclusion[z]
        breach[at] = within != inclusion
        confirmed[at] = breach[at] & (f.src[i] != SRC_LBS)
        # Out of an inclusion zone: confirmed only if the accuracy circle is wholly out (classify)
        exits = at[~within & inclusion & confirmed[at]]
        if len(exits):
            i = fix[exits]
            radius = accuracy_m(f.acc[i], f.src[i])
            confirmed[exits] = ~zones.within_m(zone[exits], f.lon[i], f.lat[i], radius)
        status[at[~within & ~inclusion]] = NEEDS_REFERENCE  # near an exclusion zone: classify measures
    at = flagged[status[flagged] == NEEDS_REFERENCE]
    if len(at):
        z, i = zone[at], fix[at]
        lon, lat, src = f.lon[i], f.lat[i], f.src[i]
        inside[at] = zones.contains(z, lon, lat, batch.cell[i])
        breach[at], confirmed[at] = classify(zones, z, lon, lat, inside[at], accuracy_m(f.acc[i], src), src)
