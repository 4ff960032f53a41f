"""The in-process feed hands events out in gap-free seq order and cuts off, never skips, a slow client."""

from __future__ import annotations

import pytest

from emwatch.feed.hub import AlertFeed, SubscriberOverflow
from emwatch.model import AlertEvent


def event(seq: int) -> AlertEvent:
    return AlertEvent("alert", "zone_exit", "s1", "j1", "d1", "z1", 0, 30.0, 120.0, "critical", seq=seq, alert_id=1)


async def test_events_published_out_of_order_are_delivered_in_seq_order() -> None:
    hub = AlertFeed(last_seq=10)
    with hub.subscribe() as sub:
        hub.publish([event(12)])  # 11 has committed elsewhere but not been published yet
        hub.publish([event(11), event(13)])
        assert [e.seq for e in await sub.next_events()] == [11, 12, 13]
    assert hub.last_seq == 13


async def test_already_delivered_seqs_are_ignored() -> None:
    hub = AlertFeed(last_seq=5)
    with hub.subscribe() as sub:
        hub.publish([event(4), event(6)])
        assert [e.seq for e in await sub.next_events()] == [6]


async def test_slow_subscriber_is_cut_off_not_skipped() -> None:
    hub = AlertFeed(subscriber_max=2)
    with hub.subscribe() as sub:
        hub.publish([event(1), event(2)])
        hub.publish([event(3)])
        with pytest.raises(SubscriberOverflow):
            while True:
                await sub.next_events()
