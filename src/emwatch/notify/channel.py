"""What a delivery channel is: one async `deliver` per notification, failing with a DeliveryError."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Notification:
    """One claimed outbox row: an alert event for one recipient on one channel target."""

    id: int
    alert_seq: int
    alert_id: int
    username: str | None
    channel: str
    target: str
    payload: dict[str, Any]
    attempts: int  # including the one in progress


class DeliveryError(Exception):
    """Delivery did not happen; `permanent` means retrying cannot help (e.g. the subscription is gone)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    """A way to reach a recipient; returns once the far end acknowledged the notification."""

    name: str

    async def deliver(self, notification: Notification) -> None: ...

    async def aclose(self) -> None: ...
