"""Wire protocol v1: the typed shape of what devices and gateways publish (docs/protocol.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

# The limits, named for the packed batch (ingest/packed.py), which checks the same ones on arrays.
MAX_ACCURACY_M = 1e7
MAX_EPOCH_MS = 2**53
DEVICE_ID_MAX_LENGTH = 128
DEVICE_ID_ALPHABET = "A-Za-z0-9._:-"  # a regex character class body

Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
Accuracy = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_ACCURACY_M)]
Battery = Annotated[int, msgspec.Meta(ge=0, le=100)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
# As registered through the API (schemas.Ident): anything else can never be a known device, and a
# NUL would even fail the database lookup.
DeviceId = Annotated[str, msgspec.Meta(min_length=1, max_length=DEVICE_ID_MAX_LENGTH,
                                       pattern=f"^[{DEVICE_ID_ALPHABET}]+$")]
FixSource = Literal["gps", "wifi", "lbs"]
EventType = Literal[
    "strap_open", "strap_closed", "case_open", "battery_low", "charging",
    "heartbeat", "companion_lost", "companion_ok",
]

SOURCE_CODES: dict[str, int] = {"gps": 0, "wifi": 1, "lbs": 2}
SOURCE_NAMES: tuple[str, ...] = ("gps", "wifi", "lbs")


class Fix(msgspec.Struct, frozen=True):
    """One position report on `em/v1/devices/{device_id}/fix` (unknown fields are ignored)."""

    ts: EpochMs
    lat: Latitude
    lon: Longitude
    acc: Accuracy | None = None
    src: FixSource = "gps"
    batt: Battery | None = None
    seq: Sequence | None = None


class GatewayFix(Fix, frozen=True, kw_only=True):
    """One element of a gateway batch on `em/v1/gateways/{gateway_id}/batch`."""

    dev: DeviceId


class UncheckedGatewayFix(Fix, frozen=True, kw_only=True):
    """A GatewayFix whose `dev` alphabet is checked for the whole batch at once (`device_ids_valid`):
    msgspec's per-string regex took 60% of a batch's decode time."""

    dev: Annotated[str, msgspec.Meta(min_length=1, max_length=DEVICE_ID_MAX_LENGTH)]


_ID_LINES = re.compile(f"[{DEVICE_ID_ALPHABET}]+(?:\n[{DEVICE_ID_ALPHABET}]+)*")


def device_ids_valid(ids: list[str]) -> bool:
    """Every id is of DeviceId's alphabet: one regex over the ids joined by newlines, which no valid id
    holds (the count of newlines guards against an id that does)."""
    joined = "\n".join(ids)
    return _ID_LINES.fullmatch(joined) is not None and joined.count("\n") == len(ids) - 1


class DeviceEvent(msgspec.Struct, frozen=True):
    """A device event on `em/v1/devices/{device_id}/event`; extra fields are kept as the payload."""

    ts: EpochMs
    type: EventType


# msgspec rejects NaN/Infinity literals and out-of-range numbers in C, before any Python runs.
fix_decoder = msgspec.json.Decoder(Fix)
gateway_batch_decoder = msgspec.json.Decoder(list[UncheckedGatewayFix])  # then device_ids_valid
raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
gateway_fix_decoder = msgspec.json.Decoder(GatewayFix)
event_decoder = msgspec.json.Decoder(DeviceEvent)
any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
