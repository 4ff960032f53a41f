"""The data model's small behaviours that the pipeline relies on."""

from __future__ import annotations

import dataclasses

from emwatch.model import AlertEvent


def test_numbered_is_the_event_with_its_seq_and_alert_id_and_every_other_field_kept() -> None:
    ev = AlertEvent("alert", "zone_exit", "s1", "j1", "d1", "z1", 1_700_000_000_000, 30.1, 120.2, "critical",
                    seq=3, alert_id=7, confidence="possible", late=True, data={"k": 1})
    assert ev.numbered(seq=11) == dataclasses.replace(ev, seq=11)
    assert ev.numbered(alert_id=12) == dataclasses.replace(ev, alert_id=12)
    assert ev.numbered(seq=13, alert_id=14) == dataclasses.replace(ev, seq=13, alert_id=14)
    assert ev.numbered() == ev
    # every field is carried, by name: a field added to AlertEvent without `numbered` knowing fails here
    varied = AlertEvent(*(f"v{i}" for i, _ in enumerate(dataclasses.fields(AlertEvent))))  # type: ignore[arg-type]
    assert dataclasses.astuple(varied.numbered()) == dataclasses.astuple(varied)
