"""The in-process feed hands events out in gap-free seq order and cuts off, never skips, a slow client."""

from __future__ import annotations

import orjson
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


async def test_appended_events_get_the_next_seqs_go_out_at_once_and_stay_pending_until_committed() -> None:
    hub = AlertFeed(last_seq=7)
    with hub.subscribe() as sub:
        sent = hub.append([event(0), event(0)])
        assert [e.seq for e in sent.events] == [8, 9]
        assert [orjson.loads(m) for m in sent.messages] == [e.to_message() for e in sent.events]
        assert [e.seq for e in await sub.next_events()] == [8, 9]
    assert [e.seq for e in hub.pending()] == [8, 9]
    hub.committed(8)
    assert [e.seq for e in hub.pending()] == [9]


async def test_provisional_lifecycle_event_gets_the_next_seq_and_is_handed_on_for_renumbering() -> None:
    hub = AlertFeed(last_seq=3)
    renumbered: list[tuple[int, int]] = []
    hub.on_provisional = lambda provisional, final: renumbered.append((provisional, final.seq))
    with hub.subscribe() as sub:
        [sent] = hub.publish([event(-2)])
        assert [e.seq for e in await sub.next_events()] == [4] == [sent.seq]
    assert renumbered == [(-2, 4)]


async def test_a_reader_behind_gets_everything_waiting_in_one_delivery_with_each_events_message() -> None:
    hub = AlertFeed(last_seq=0)
    with hub.subscribe() as sub:
        hub.append([event(0)])
        hub.append([event(0), event(0)])
        delivery = await sub.next_delivery()
        assert [e.seq for e in delivery.events] == [1, 2, 3]
        assert [orjson.loads(m) for m in delivery.messages] == [e.to_message() for e in delivery.events]


async def test_each_event_is_encoded_once_for_all_subscribers() -> None:
    hub = AlertFeed()
    with hub.subscribe() as one, hub.subscribe() as two:
        hub.append([event(0)])
        first, second = await one.next_delivery(), await two.next_delivery()
        assert first.messages[0] is second.messages[0]


async def test_a_cut_off_reader_learns_it_even_with_deliveries_still_waiting() -> None:
    hub = AlertFeed(subscriber_max=3)
    with hub.subscribe() as sub:
        hub.append([event(0), event(0)])
        hub.append([event(0), event(0)])  # past the bound
        with pytest.raises(SubscriberOverflow):
            await sub.next_delivery()


async def test_committed_events_leave_pending_in_seq_order() -> None:
    hub = AlertFeed(last_seq=0)
    hub.append([event(0) for _ in range(5)])
    hub.committed(3)
    assert [e.seq for e in hub.pending()] == [4, 5]
    hub.committed(2)  # an older commit report changes nothing
    assert [e.seq for e in hub.pending()] == [4, 5]
    hub.committed(5)
    assert hub.pending() == []
