"""/metrics tells how long the service's one writer spends in write transactions (its busy share)."""

from __future__ import annotations

from tests.e2e.conftest import INSIDE, Service


def _sample(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_every_committed_batch_adds_its_write_time_to_the_commit_histogram(service: Service) -> None:
    before = (await service.http.get("/metrics")).text
    _, device = await service.add_subject()
    await service.publish_fix(device, *INSIDE)
    await service.drain()
    after = (await service.http.get("/metrics")).text
    assert _sample(after, "emwatch_commit_seconds_count") > _sample(before, "emwatch_commit_seconds_count")
    assert _sample(after, "emwatch_commit_seconds_sum") > _sample(before, "emwatch_commit_seconds_sum")
