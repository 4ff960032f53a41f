"""Alerts also go out on MQTT for other systems; health and metrics describe the running service."""

from __future__ import annotations

import asyncio
import gc
import secrets

import orjson

from emwatch.heap import STEADY_GC_THRESHOLDS
from emwatch.ingest.mqtt import make_client
from tests.e2e.conftest import OUTSIDE, Service, now_ms


async def test_alert_is_published_on_the_mqtt_alert_topic(service: Service) -> None:
    subject, device = await service.add_subject()
    async with make_client(service.mqtt_url, f"sub-{secrets.token_hex(4)}", persistent=False) as listener:
        await listener.subscribe(f"em/v1/alerts/j-test/{subject}", qos=1)
        ts = await service.publish_fix(device, *OUTSIDE, ts=now_ms())
        message = await asyncio.wait_for(anext(aiter(listener.messages)), timeout=10)
    payload = orjson.loads(message.payload)  # type: ignore[arg-type]
    assert message.topic.value == f"em/v1/alerts/j-test/{subject}"
    assert (payload["type"], payload["rule"], payload["subject_id"], payload["ts"]) == (
        "alert", "zone_exit", subject, ts)
    assert payload["seq"] > 0 and payload["id"] > 0


async def test_healthz_reports_database_and_broker(service: Service) -> None:
    r = await service.http.get("/healthz")
    assert r.status_code == 200
    assert r.json()["database"] is True and r.json()["mqtt"] is True and r.json()["status"] == "ok"


async def test_metrics_count_what_the_pipeline_did(service: Service) -> None:
    _, device = await service.add_subject()
    await service.publish_raw(f"em/v1/devices/{device}/fix", b"{broken")
    await service.publish_fix(device, *OUTSIDE)
    await service.drain()
    text = (await service.http.get("/metrics")).text
    for name in ("emwatch_fixes_received_total", "emwatch_fixes_stored_total", "emwatch_batch_fixes_bucket",
                 "emwatch_batch_processing_seconds_bucket", 'emwatch_fixes_invalid_total{reason="invalid"}',
                 'emwatch_alert_events_total{rule="zone_exit",type="alert"}', "emwatch_batch_queue_depth"):
        assert name in text, name


async def test_metrics_show_the_late_fix_history_the_service_keeps(service: Service) -> None:
    _, device = await service.add_subject()
    await service.publish_fix(device, *OUTSIDE)
    await service.drain()
    text = (await service.http.get("/metrics")).text
    value = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line.startswith("emwatch_reorder_history_")}
    history = service.pipeline.engine.history if service.pipeline.engine else None
    assert history is not None and history.fixes >= 1
    # Packed: 22 bytes a fix, up to 34 in chunks that keep doubles or 64-bit times (other tests' fixes).
    assert 22 * history.fixes <= history.nbytes <= 34 * history.fixes
    # The gauges are the process's, and every service running in the test process hears every fix (one
    # broker): whichever pipeline evaluated last set them, so they are checked for sense, not identity.
    fixes, nbytes = value["emwatch_reorder_history_fixes"], value["emwatch_reorder_history_bytes"]
    assert fixes >= 1 and 22 * fixes <= nbytes <= 34 * fixes


async def test_the_rule_state_is_kept_out_of_the_collector_and_its_pauses_are_measured(service: Service) -> None:
    assert gc.get_freeze_count() > 0  # frozen after the registry load
    assert gc.get_threshold() == STEADY_GC_THRESHOLDS
    gc.collect()
    text = (await service.http.get("/metrics")).text
    count = next(float(line.split(" ")[1]) for line in text.splitlines()
                 if line.startswith('emwatch_gc_pause_seconds_count{generation="2"}'))
    assert count >= 1
