"""What a ZoneIndex keeps of each zone besides its geometry: the id, both ways, and zone views on demand.

At national scale there are ~2.5 zones per device; a Python `str` id plus a dict entry cost ~200 B
per zone, a frozen `Zone` object with its properties dict another ~200 B. Here ids live in one
sorted byte-string array (the id's UTF-8 bytes plus 8 B per zone) and a zone is rebuilt only when
someone asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, overload

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.geo.zones import ZoneKind

if TYPE_CHECKING:
    from emwatch.geo.zone_index import ZoneIndex


class ZoneIds(Mapping[str, int]):
    """Zone id → dense index (a read-only mapping), and `id_at(index)` back."""

    __slots__ = ("_order", "_rank", "_sorted")

    def __init__(self, ids: Sequence[str]) -> None:
        if any("\x00" in i for i in ids):  # numpy byte strings are NUL-padded: a trailing NUL would vanish
            raise ValueError("zone ids must not contain NUL characters")
        encoded = np.array([i.encode() for i in ids], dtype=np.bytes_) if ids else np.empty(0, "S1")
        order = np.argsort(encoded, kind="stable")
        self._sorted = encoded[order]
        if len(ids) > 1 and bool((self._sorted[1:] == self._sorted[:-1]).any()):
            raise ValueError("zone ids must be unique")
        self._order = order.astype(np.int32)  # sorted position → zone index
        self._rank = np.empty(len(ids), dtype=np.int32)  # zone index → sorted position
        self._rank[self._order] = np.arange(len(ids), dtype=np.int32)

    def __getstate__(self) -> tuple[NDArray[np.bytes_], NDArray[np.int32], NDArray[np.int32]]:
        return self._sorted, self._order, self._rank

    def __setstate__(self, state: tuple[NDArray[np.bytes_], NDArray[np.int32], NDArray[np.int32]]) -> None:
        self._sorted, self._order, self._rank = state

    def __len__(self) -> int:
        return len(self._rank)

    def __iter__(self) -> Iterator[str]:
        """Ids in zone-index order."""
        return (bytes(self._sorted[r]).decode() for r in self._rank.tolist())

    def __getitem__(self, key: str) -> int:
        at = self._find(key)
        if at < 0:
            raise KeyError(key)
        return at

    def __contains__(self, key: object) -> bool:
        return self._find(key) >= 0

    def get(self, key: str, default: int | None = None) -> int | None:  # type: ignore[override]
        at = self._find(key)
        return at if at >= 0 else default

    def id_at(self, index: int) -> str:
        """The id of zone `index`."""
        return bytes(self._sorted[self._rank[index]]).decode()

    @property
    def nbytes(self) -> int:
        return self._sorted.nbytes + self._order.nbytes + self._rank.nbytes

    def _find(self, key: object) -> int:
        if not isinstance(key, str) or not len(self._sorted):
            return -1
        raw = key.encode()
        if len(raw) > self._sorted.itemsize:
            return -1
        at = int(self._sorted.searchsorted(raw))  # the method: a third of np.searchsorted's overhead
        if at < len(self._sorted) and bytes(self._sorted[at]) == raw:
            return int(self._order[at])
        return -1


class IndexedZone:
    """Zone `index` of a ZoneIndex as indexed: id, kind and shape (its scope, schedule and properties
    stay with the registry's rows). Attributes are read from the index when asked for."""

    __slots__ = ("_zones", "index")

    def __init__(self, zones: ZoneIndex, index: int) -> None:
        self._zones, self.index = zones, index

    @property
    def id(self) -> str:
        return self._zones.ids.id_at(self.index)

    @property
    def kind(self) -> ZoneKind:
        return "inclusion" if self._zones.kind_is_inclusion[self.index] else "exclusion"

    @property
    def is_circle(self) -> bool:
        return bool(self._zones.is_circle[self.index])

    @property
    def radius_m(self) -> float | None:
        return float(self._zones.radius_m[self.index]) if self.is_circle else None

    @property
    def geometry(self) -> shapely.Geometry:
        """The polygon, or the centre Point of a circle (as `Zone.geometry`)."""
        return self._zones.geometry(self.index)


class IndexedZones(Sequence[IndexedZone]):
    """The zones of a ZoneIndex in index order, each an IndexedZone made on access."""

    __slots__ = ("_zones",)

    def __init__(self, zones: ZoneIndex) -> None:
        self._zones = zones

    def __len__(self) -> int:
        return len(self._zones.ids)

    @overload
    def __getitem__(self, i: int) -> IndexedZone: ...
    @overload
    def __getitem__(self, i: slice) -> list[IndexedZone]: ...
    def __getitem__(self, i: int | slice) -> IndexedZone | list[IndexedZone]:
        if isinstance(i, slice):
            return [IndexedZone(self._zones, k) for k in range(len(self))[i]]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        return IndexedZone(self._zones, i % n)
