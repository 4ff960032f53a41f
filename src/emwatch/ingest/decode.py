"""Bytes and a topic in, typed fixes/events or dead letters with a reason out. Never raises."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import numpy as np

from emwatch.ingest import packed
from emwatch.ingest import protocol as p
from emwatch.model import FixColumns

# msgspec raises RecursionError (not DecodeError) on JSON nested ~1000 deep, e.g. in an ignored field.
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message (or one element of a gateway batch) we could not accept, kept with the reason."""

    topic: str
    payload: bytes
    reason: str


@dataclass(slots=True)
class Decoded:
    """What one MQTT message contained: fixes one by one (JSON) or as columns (a packed batch)."""

    fixes: list[tuple[str, p.Fix]] = field(default_factory=list)
    events: list[tuple[str, p.DeviceEvent, bytes]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    columns: list[FixColumns] = field(default_factory=list)

    @property
    def fix_count(self) -> int:
        """Accepted fixes, one by one and in columns."""
        return len(self.fixes) + sum(len(c) for c in self.columns)


@dataclass(frozen=True, slots=True)
class MessageDecoder:
    """Decodes wire-protocol v1 messages; time limits are in epoch milliseconds relative to `now_ms`."""

    prefix: str = "em/v1"
    max_payload_bytes: int = 1_048_576
    max_future_ms: int = 300_000
    max_age_ms: int = 7 * 86_400_000

    def decode(self, topic: str, payload: bytes, now_ms: int) -> Decoded:
        """Decode one message; every failure becomes a dead letter, nothing is raised."""
        out = Decoded()
        if len(payload) > self.max_payload_bytes:
            out.dead.append(DeadLetter(topic, payload[:4096], f"payload of {len(payload)} bytes over limit"))
            return out
        parts = topic.split("/")
        root = self.prefix.split("/")
        tail = parts[len(root):]
        if parts[: len(root)] != root or len(tail) != 3 or not tail[1]:
            out.dead.append(DeadLetter(topic, payload, "unknown topic"))
            return out
        kind, ident, leaf = tail
        if kind == "devices" and leaf == "fix":
            self._single_fix(out, topic, ident, payload, now_ms)
        elif kind == "gateways" and leaf == "batch":
            self._gateway_batch(out, topic, payload, now_ms)
        elif kind == "devices" and leaf == "event":
            self._event(out, topic, ident, payload, now_ms)
        else:
            out.dead.append(DeadLetter(topic, payload, "unknown topic"))
        return out

    def _time_error(self, ts: int, now_ms: int) -> str | None:
        if ts > now_ms + self.max_future_ms:
            return f"ts {ts} is more than {self.max_future_ms // 1000} s in the future"
        if ts < now_ms - self.max_age_ms:
            return f"ts {ts} is older than {self.max_age_ms // 1000} s"
        return None

    def _accept(self, out: Decoded, topic: str, raw: bytes, device_id: str, fix: p.Fix, now_ms: int) -> None:
        reason = self._time_error(fix.ts, now_ms)
        if reason is None:
            out.fixes.append((device_id, fix))
        else:
            out.dead.append(DeadLetter(topic, raw, reason))

    def _single_fix(self, out: Decoded, topic: str, device_id: str, payload: bytes, now_ms: int) -> None:
        try:
            fix = p.fix_decoder.decode(payload)
        except _UNDECODABLE as exc:
            out.dead.append(DeadLetter(topic, payload, f"invalid fix: {exc}"))
            return
        self._accept(out, topic, payload, device_id, fix, now_ms)

    def _gateway_batch(self, out: Decoded, topic: str, payload: bytes, now_ms: int) -> None:
        if payload[: len(packed.MAGIC)] == packed.MAGIC:
            self._packed_batch(out, topic, payload, now_ms)
            return
        try:
            fixes = p.gateway_batch_decoder.decode(payload)
        except _UNDECODABLE:
            fixes = None
        if fixes is None or (fixes and not p.device_ids_valid([fix.dev for fix in fixes])):
            # Slow path only when something is wrong: isolate the bad elements, keep the good ones.
            self._gateway_batch_elementwise(out, topic, payload, now_ms)
            return
        for fix in fixes:
            if (reason := self._time_error(fix.ts, now_ms)) is None:
                out.fixes.append((fix.dev, fix))
            else:
                out.dead.append(DeadLetter(topic, msgspec.json.encode(fix), reason))

    def _gateway_batch_elementwise(self, out: Decoded, topic: str, payload: bytes, now_ms: int) -> None:
        try:
            elements = p.raw_list_decoder.decode(payload)
        except _UNDECODABLE as exc:
            out.dead.append(DeadLetter(topic, payload, f"invalid gateway batch: {exc}"))
            return
        for index, element in enumerate(elements):
            raw = bytes(element)
            try:
                fix = p.gateway_fix_decoder.decode(raw)
            except _UNDECODABLE as exc:
                out.dead.append(DeadLetter(topic, raw, f"invalid fix at index {index}: {exc}"))
                continue
            self._accept(out, topic, raw, fix.dev, fix, now_ms)

    def _packed_batch(self, out: Decoded, topic: str, payload: bytes, now_ms: int) -> None:
        try:
            rows = packed.unpack(payload)
        except packed.PackedError as exc:
            out.dead.append(DeadLetter(topic, payload, f"invalid gateway batch: {exc}"))
            return
        keep, columns = rows.accept(now_ms - self.max_age_ms, now_ms + self.max_future_ms)
        if keep.all():
            if len(rows):
                out.columns.append(columns)
            return
        # Python per row only for the rejected ones, which are rare.
        for i in np.flatnonzero(~keep).tolist():
            bad = rows.reason(i)
            reason = f"invalid fix at index {i}: {bad}" if bad else self._time_error(int(rows.ts[i]), now_ms)
            out.dead.append(DeadLetter(topic, rows.row_payload(i), reason or "outside the time window"))
        if keep.any():
            out.columns.append(columns.take(np.flatnonzero(keep)))

    def _event(self, out: Decoded, topic: str, device_id: str, payload: bytes, now_ms: int) -> None:
        try:
            event = p.event_decoder.decode(payload)
            details = p.any_decoder.decode(payload)
            if not isinstance(details, dict):
                raise msgspec.DecodeError("event must be a JSON object")
            # The details are stored as jsonb, and PostgreSQL text cannot hold U+0000.
            if b"\\u0000" in payload and _has_nul(details):
                raise msgspec.DecodeError("a string contains \\u0000 (NUL), which cannot be stored")
        except _UNDECODABLE as exc:
            out.dead.append(DeadLetter(topic, payload, f"invalid event: {exc}"))
            return
        if (reason := self._time_error(event.ts, now_ms)) is not None:
            out.dead.append(DeadLetter(topic, payload, reason))
            return
        out.events.append((device_id, event, payload))


def _has_nul(value: object) -> bool:
    """Whether any key or string inside a decoded JSON value contains U+0000 (iterative: no depth limit)."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
