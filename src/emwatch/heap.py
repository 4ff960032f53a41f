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


def freeze_long_lived() -> None:
    """Move every object alive now into the collector's permanent generation: full collections then
    scan only what was made since (an alert burst's events), not the whole rule state again."""
    gc.freeze()


def thaw_long_lived() -> None:
    """Undo `freeze_long_lived` (before a reload: the snapshot it replaces may hold cycles to collect)."""
    gc.unfreeze()
