"""Micro-batching under load: a batch grows while evaluation is busy, up to BATCH_GROWTH x its size."""

from __future__ import annotations

import time
from typing import Any, cast

import asyncpg
import numpy as np

from emwatch.feed.hub import AlertFeed
from emwatch.ingest.batcher import IngestBatch
from emwatch.ingest.packed import encode_batch
from emwatch.pipeline import BATCH_GROWTH, Pipeline, Tick
from emwatch.settings import Settings

SIZE = 100


def message(first: int) -> bytes:
    ids = [f"dev-{i:05d}" for i in range(first, first + SIZE)]
    return encode_batch(ids, np.full(SIZE, int(time.time() * 1000)), np.zeros(SIZE), np.zeros(SIZE))


def queued(pipeline: Pipeline) -> list[int]:
    items = cast(Any, pipeline.batches)._queue  # asyncio.Queue keeps its items in a deque
    return [len(b.fixes) for b in items if isinstance(b, IngestBatch)]


async def test_a_batch_grows_while_evaluation_is_busy_and_flushes_at_the_growth_bound() -> None:
    settings = Settings(batch_max_fixes=SIZE, batch_max_ms=60_000)  # the timer plays no part here
    pipeline = Pipeline(settings, cast(asyncpg.Pool, None), AlertFeed())
    topic = "em/v1/gateways/g/batch"
    await pipeline._accept(topic, message(0), (1, 1))
    assert queued(pipeline) == [SIZE]  # evaluation idle: a full batch goes at once
    for k in range(1, BATCH_GROWTH):  # evaluation has not taken it yet: the next batch grows
        await pipeline._accept(topic, message(k * SIZE), (k + 1, 1))
        assert queued(pipeline) == [SIZE]
    await pipeline._accept(topic, message(BATCH_GROWTH * SIZE), (BATCH_GROWTH + 1, 1))
    assert queued(pipeline) == [SIZE, BATCH_GROWTH * SIZE]


async def test_a_batch_flushes_at_its_size_once_evaluation_has_taken_the_queue() -> None:
    settings = Settings(batch_max_fixes=SIZE, batch_max_ms=60_000)
    pipeline = Pipeline(settings, cast(asyncpg.Pool, None), AlertFeed())
    topic = "em/v1/gateways/g/batch"
    await pipeline.batches.put(Tick(0))
    await pipeline._accept(topic, message(0), (1, 1))
    assert queued(pipeline) == []  # a tick is waiting: evaluation is behind
    pipeline.batches.get_nowait()  # evaluation takes the tick
    await pipeline._accept(topic, message(SIZE), (2, 1))
    assert queued(pipeline) == [2 * SIZE]
