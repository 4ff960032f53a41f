"""Hand freed heap pages back to the operating system after a large, short-lived allocation, and keep
the long-lived heap (registry snapshot, rule state) out of the cyclic garbage collector's way."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_free_heap() -> None:
    """Collect garbage, then ask glibc to return free heap pages (a no-op elsewhere).

    A registry load parses every row of the database into short-lived objects; glibc keeps the freed
    pages, so without this the service's RSS stays ~0.3-1 KB per device above what the registry holds.
    """
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


# After the freeze the collector's young generation is collected every 10,000 container allocations
# (CPython's default: 700) and a full collection is considered every 50 x 100 of those. A full collection
# of the episodes, alerts and batches in flight stopped the event loop for 100-350 ms, a few times a
# minute at 70k fixes/s (emwatch_gc_pause_seconds, RESULTS.md session 12): the alerts' p95 and p99.
# Reference counting frees nearly everything; the collector is only for cycles, which the data path
# does not make.
STEADY_GC_THRESHOLDS = (10_000, 50, 100)


def freeze_long_lived() -> None:
    """Move every object alive now into the collector's permanent generation, and collect the rest
    rarely (`STEADY_GC_THRESHOLDS`): a full collection then never rescans the rule state, and seldom
    stops the event loop at all."""
    gc.freeze()
    gc.set_threshold(*STEADY_GC_THRESHOLDS)


def thaw_long_lived() -> None:
    """Undo `freeze_long_lived`'s freeze (before a reload: the snapshot it replaces may hold cycles to
    collect); the thresholds stay."""
    gc.unfreeze()
