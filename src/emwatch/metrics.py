"""Prometheus metrics of the pipeline (served on /metrics)."""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter("emwatch_mqtt_messages_received_total", "MQTT messages received")
FIXES_RECEIVED = Counter("emwatch_fixes_received_total", "Fixes decoded from MQTT")
FIXES_INVALID = Counter("emwatch_fixes_invalid_total", "Messages or batch elements dead-lettered", ["reason"])
FIXES_STORED = Counter("emwatch_fixes_stored_total", "Fixes newly stored (duplicates excluded)")
FIXES_LATE = Counter(
    "emwatch_fixes_late_total", "Fixes older than their device's latest (stored, not evaluated)"
)
DEVICE_EVENTS = Counter("emwatch_device_events_total", "Device events stored")
ALERT_EVENTS = Counter("emwatch_alert_events_total", "Alert events committed", ["rule", "type"])
BATCH_SIZE = Histogram(
    "emwatch_batch_fixes", "Fixes per micro-batch", buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000)
)
BATCH_SECONDS = Histogram(
    "emwatch_batch_processing_seconds", "Evaluate + commit + publish time of one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
QUEUE_DEPTH = Gauge("emwatch_batch_queue_depth", "Batches waiting for evaluation")
FEED_SUBSCRIBERS = Gauge("emwatch_feed_subscribers", "Connected WebSocket feed clients")
REORDER_HISTORY_FIXES = Gauge(
    "emwatch_reorder_history_fixes", "Fixes kept for late-fix replays (the reorder horizon's)"
)
REORDER_HISTORY_BYTES = Gauge("emwatch_reorder_history_bytes", "Bytes of the kept fixes' packed columns")
REGISTRY_RELOADS = Counter("emwatch_registry_reloads_total", "Registry snapshots rebuilt from the database")


GC_PAUSE = Histogram(
    "emwatch_gc_pause_seconds", "Pauses of Python's cyclic garbage collector (the event loop stands still)",
    ["generation"], buckets=(0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
_gc_started = [0.0]


def _time_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _gc_started[0])


gc.callbacks.append(_time_gc)


def dead_letter_reason_label(reason: str) -> str:
    """A low-cardinality label from a dead-letter reason."""
    for label in ("unknown device", "unknown topic", "over limit", "in the future", "older than"):
        if label in reason:
            return label.replace(" ", "_")
    return "invalid"
COMMIT_RETRIES = Counter(
    "emwatch_commit_retries_total", "Batch commits retried while the database was unreachable"
)
NOTIFICATIONS = Counter(
    "emwatch_notifications_total", "Officer notification delivery attempts by channel and outcome",
    ["channel", "outcome"],  # outcome: delivered, retried, failed
)
