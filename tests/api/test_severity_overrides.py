"""Per-jurisdiction severity over HTTP: admins set and lift overrides, audited; the pipeline applies them."""

from __future__ import annotations

import orjson

from tests.api.conftest import World
from tests.e2e.conftest import now_ms


async def _until_loaded(world: World, jurisdiction: str, present: bool) -> None:
    """Drain until the pipeline's registry has (or no longer has) overrides for `jurisdiction` (NOTIFY lags)."""
    for _ in range(100):
        await world.service.drain()
        engine = world.service.pipeline.engine
        assert engine is not None
        if (jurisdiction in engine.registry.severity_overrides) == present:
            return
    raise TimeoutError(f"the pipeline never {'loaded' if present else 'dropped'} overrides of {jurisdiction}")


async def test_an_admin_overrides_severity_for_a_district_and_lifts_it(world: World) -> None:
    admin, d1, o1 = world.service.http, world.j("d1"), world.j("o1")
    path = f"/api/severity/{d1}/battery_low/medium"
    r = await admin.put(path, json={"severity": "critical"})
    assert r.status_code == 200, r.text
    assert (r.json()["jurisdiction_id"], r.json()["severity"]) == (d1, "critical")
    listed = await admin.get("/api/severity", params={"jurisdiction_id": d1})
    assert [(o["rule"], o["risk_level"], o["severity"]) for o in listed.json()] == [("battery_low", "medium", "critical")]
    audit = await admin.get("/api/audit", params={"action": "severity.set", "limit": 10})
    assert any(e["target_id"] == d1 for e in audit.json()), audit.text

    # The pipeline picks it up: s1 (office o1, below d1) now raises battery_low as critical; s3 (d2) does not.
    await _until_loaded(world, o1, present=True)
    ts = now_ms()
    for short in ("s1", "s3"):
        device = world.devices[short]
        await world.service.publish_raw(f"em/v1/devices/{device}/event", orjson.dumps({"ts": ts, "type": "battery_low"}))
        await world.service.publish_raw(f"em/v1/devices/{device}/event", orjson.dumps({"ts": ts + 1, "type": "charging"}))
    await world.service.drain()
    r = await admin.get("/api/alerts", params={"rule": "battery_low", "limit": 100})
    severity = {a["subject_id"]: a["severity"] for a in r.json()}
    assert (severity[world.subjects["s1"]], severity[world.subjects["s3"]]) == ("critical", "warning"), r.text

    assert (await admin.delete(path)).status_code == 204
    assert (await admin.delete(path)).status_code == 404
    await _until_loaded(world, o1, present=False)


async def test_bad_overrides_are_refused_and_only_admins_may_set_them(world: World) -> None:
    admin, d1 = world.service.http, world.j("d1")
    assert (await admin.put(f"/api/severity/{d1}/no_such_rule/high", json={"severity": "warning"})).status_code == 422
    assert (await admin.put(f"/api/severity/{d1}/zone_exit/extreme", json={"severity": "warning"})).status_code == 422
    assert (await admin.put(f"/api/severity/{d1}/zone_exit/high", json={"severity": "urgent"})).status_code == 422
    unknown = await admin.put("/api/severity/nowhere/zone_exit/high", json={"severity": "warning"})
    assert unknown.status_code == 422 and "unknown jurisdiction" in unknown.text
    for user in ("sup1", "op1", "off1"):
        r = await world.client(user).put(f"/api/severity/{d1}/zone_exit/high", json={"severity": "warning"})
        assert r.status_code == 403, (user, r.text)
