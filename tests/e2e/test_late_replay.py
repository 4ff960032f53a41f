"""A buffered burst that arrives late moves a raised alert's event-time start: stored, and on the feed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from tests.e2e.conftest import INSIDE, OUTSIDE, Service, feed, now_ms


async def test_late_burst_moves_the_open_alert_to_its_event_time_start(service: Service) -> None:
    subject, device = await service.add_subject()
    t0 = now_ms() - 200_000  # well inside the 300 s reorder horizon and the accepted age
    async with feed(service, subject) as live:
        # Live: in the county, then (after a gap out of coverage) outside it: the alert opens at t0+100 s.
        await service.publish_fix(device, *INSIDE, ts=t0)
        await service.drain()
        await service.publish_fix(device, *OUTSIDE, ts=t0 + 100_000)
        alert = await live.next()
        assert (alert["type"], alert["rule"], alert["ts"]) == ("alert", "zone_exit", t0 + 100_000)
        await service.drain()

        # The bracelet flushes what it buffered: it was already outside at t0+40 s.
        burst = [{"dev": device, "ts": t0 + s * 1000, "lat": OUTSIDE[1], "lon": OUTSIDE[0], "acc": 8.0}
                 for s in (40, 50)]
        await service.publish_raw("em/v1/gateways/gw-late/batch", orjson.dumps(burst))
        revised = await live.next()
        assert (revised["type"], revised["id"], revised["ts"]) == ("revised", alert["id"], t0 + 40_000)
        assert revised["data"] == {"opened_at": t0 + 40_000, "cleared_at": None,
                                   "was_opened_at": t0 + 100_000, "was_cleared_at": None}
        assert revised["seq"] > alert["seq"]
        await service.drain()
        await live.expect_silence()  # the same violation: no second alert, no clear

    # Stored: the alert itself now opens at the event-time start, still open.
    r = await service.http.get("/api/alerts", params={"subject_id": subject})
    assert r.status_code == 200, r.text
    [stored] = r.json()
    assert (stored["id"], stored["status"], stored["cleared_at"]) == (alert["id"], "open", None)
    assert datetime.fromisoformat(stored["opened_at"]).timestamp() * 1000 == t0 + 40_000

    # Replayed from the database: the same two events, in seq order, with no gap in the feed.
    async with feed(service, None, since=alert["seq"] - 1) as replay:
        replayed: list[dict[str, Any]] = []
        while not replayed or replayed[-1]["seq"] < revised["seq"]:
            replayed.append(await replay.next())
    seqs = [m["seq"] for m in replayed]
    assert seqs == list(range(alert["seq"], revised["seq"] + 1))
    assert [m for m in replayed if m["subject_id"] == subject] == [alert, revised]
