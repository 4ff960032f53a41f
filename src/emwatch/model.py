"""Values that travel between the pipeline's rooms: a batch of fixes, a rule observation, an alert event."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

NO_SEQ = np.iinfo(np.int64).min  # "seq absent" in the int64 column
NO_BATT = -1


class IdsAt(Sequence[str]):
    """ids[index[k]] for each k, fetched only when read. Reordering a batch (the engine's event-time
    order) leaves the id strings where they are: the rules and the store go by dense device index, and
    a list of 2,000 ids built anyway cost ~0.12 ms a batch, a twentieth of containment's time."""

    __slots__ = ("_ids", "_index", "_items")

    def __init__(self, ids: Sequence[str], index: NDArray[np.intp]) -> None:
        self._ids, self._index = ids, index
        self._items: list[str] | None = None

    def _list(self) -> list[str]:
        if self._items is None:
            at = self._index.tolist()
            # itemgetter fetches in C (~25% faster than a comprehension); with one index it returns the item
            self._items = list(itemgetter(*at)(self._ids)) if len(at) > 1 else [self._ids[i] for i in at]
        return self._items

    def __len__(self) -> int:
        return len(self._index)

    @overload
    def __getitem__(self, k: int) -> str: ...
    @overload
    def __getitem__(self, k: slice) -> list[str]: ...
    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return self._list()[k]
        return self._ids[int(self._index[k])] if self._items is None else self._items[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self._list() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # compares by value, like the list it stands for

    def __repr__(self) -> str:
        return repr(self._list())


@dataclass(frozen=True, slots=True)
class FixColumns:
    """Fixes as columns (struct of arrays), one row per fix, as decoded from the wire."""

    device_ids: Sequence[str]  # a list as decoded; IdsAt once reordered
    ts: NDArray[np.int64]  # epoch ms
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    acc: NDArray[np.float32]  # NaN when the device sent none
    src: NDArray[np.int8]  # index into protocol.SOURCE_NAMES
    batt: NDArray[np.int16]  # NO_BATT when absent
    seq: NDArray[np.int64]  # NO_SEQ when absent

    def __len__(self) -> int:
        return len(self.device_ids)

    def take(self, index: NDArray[np.intp]) -> FixColumns:
        """The rows at `index`, in that order."""
        return FixColumns(
            IdsAt(self.device_ids, index), self.ts[index], self.lat[index], self.lon[index],
            self.acc[index], self.src[index], self.batt[index], self.seq[index],
        )


@dataclass(frozen=True, slots=True)
class FixBatch:
    """Accepted fixes of known devices, with their dense indices and H3 cells."""

    fixes: FixColumns
    device: NDArray[np.int32]
    subject: NDArray[np.int32]  # -1 for a device not assigned to a subject
    cell: NDArray[np.uint64]
    fresh: NDArray[np.bool_]  # newer than the device's latest evaluated fix
    suspect: NDArray[np.bool_]  # implies impossible movement: kept, but no zone rule acts on it
    # The registry's subject ids `subject` indexes into; empty when not known (the store then looks each
    # fix's subject up in PostgreSQL, a slower path: store/fixes.py).
    subject_ids: Sequence[str] = ()
    # The registry's device ids `device` indexes into (fixes.device_ids[i] == device_ids[device[i]]);
    # empty when not known. The store then writes each fix's device id from a column built once.
    device_ids: Sequence[str] = ()

    def __len__(self) -> int:
        return len(self.fixes)


@dataclass(frozen=True, slots=True)
class Observations:
    """One row per rule check: was `subject` in breach of `rule` (for `zone`, -1 if none) at `ts`."""

    subject: NDArray[np.int32]
    rule: NDArray[np.int16]  # code in rules.catalog.RULES
    zone: NDArray[np.int32]  # -1 for rules that are not about a zone
    device: NDArray[np.int32]
    ts: NDArray[np.int64]
    lat: NDArray[np.float64]  # NaN when the check had no position (a device event, a timer)
    lon: NDArray[np.float64]
    breach: NDArray[np.bool_]
    confirmed: NDArray[np.bool_]  # False: only possibly in breach (the accuracy circle straddles)
    # Sparse evidence for the alert a row may open, by row number (separation, proximity rules).
    detail: dict[int, dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.subject)

    @classmethod
    def empty(cls) -> Observations:
        return cls.concat([])

    @classmethod
    def concat(cls, parts: list[Observations]) -> Observations:
        """All rows of `parts`, in order."""
        parts = [p for p in parts if len(p)]  # most rules have nothing to say about most batches

        def cat(name: str, dtype: type) -> NDArray[Any]:
            if not parts:
                return np.empty(0, dtype)
            return np.concatenate([getattr(p, name) for p in parts]).astype(dtype, copy=False)

        detail: dict[int, dict[str, Any]] = {}
        offset = 0
        for p in parts:
            if p.detail:
                detail.update((offset + i, d) for i, d in p.detail.items())
            offset += len(p)
        return cls(
            cat("subject", np.int32), cat("rule", np.int16), cat("zone", np.int32), cat("device", np.int32),
            cat("ts", np.int64), cat("lat", np.float64), cat("lon", np.float64), cat("breach", np.bool_),
            cat("confirmed", np.bool_), detail=detail or None,
        )


AlertEventType = Literal["alert", "confirmed", "cleared", "acknowledged", "revised"]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A change in an alert episode; `seq` and `alert_id` are assigned when it is stored."""

    type: AlertEventType
    rule: str
    subject_id: str
    jurisdiction_id: str
    device_id: str | None
    zone_id: str | None
    ts: int  # epoch ms of the fix (or action) that caused it
    lat: float | None
    lon: float | None
    severity: str
    seq: int = 0
    alert_id: int = 0
    confidence: str = "confirmed"  # "possible" until an accurate fix confirms the breach
    late: bool = False  # found in fixes that arrived after newer ones (buffered while out of coverage)
    data: dict[str, Any] | None = None  # the rule's evidence (separation score, distances), if any

    def numbered(self, *, seq: int | None = None, alert_id: int | None = None) -> AlertEvent:
        """This event with its feed seq and/or alert id. A burst numbers tens of thousands of events:
        built positionally, a third of what dataclasses.replace costs."""
        return AlertEvent(
            self.type, self.rule, self.subject_id, self.jurisdiction_id, self.device_id, self.zone_id,
            self.ts, self.lat, self.lon, self.severity, self.seq if seq is None else seq,
            self.alert_id if alert_id is None else alert_id, self.confidence, self.late, self.data,
        )

    def to_message(self) -> dict[str, Any]:
        """The wire shape on the WebSocket feed and MQTT alert topic (docs/protocol.md)."""
        return {
            "seq": self.seq, "id": self.alert_id, "type": self.type, "rule": self.rule,
            "subject_id": self.subject_id, "jurisdiction_id": self.jurisdiction_id,
            "device_id": self.device_id, "zone_id": self.zone_id, "ts": self.ts,
            "lat": self.lat, "lon": self.lon, "severity": self.severity, "confidence": self.confidence,
            "late": self.late,
        } | ({"data": self.data} if self.data is not None else {})

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> AlertEvent:
        """The inverse of `to_message`."""
        fields = {k: v for k, v in message.items() if k != "id"}
        return cls(**fields, alert_id=message["id"])
