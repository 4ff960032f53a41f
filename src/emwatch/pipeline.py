"""The data path in one place: MQTT → decode → micro-batch → rules → episodes → PostgreSQL → feed/MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiomqtt
import asyncpg
import orjson

from emwatch import metrics
from emwatch.alerts.episodes import Debounce, EpisodeBook
from emwatch.feed.hub import AlertFeed
from emwatch.ingest.batcher import BatchBuilder, IngestBatch
from emwatch.ingest.decode import MessageDecoder
from emwatch.ingest.mqtt import BrokerAddress, acknowledge, make_client, subscription_topics
from emwatch.model import AlertEvent
from emwatch.rules.engine import Evaluation, RuleConfig, RuleEngine
from emwatch.settings import Settings
from emwatch.store import registry_source
from emwatch.store.writer import commit_batch, write_alert_events

log = logging.getLogger(__name__)
T = TypeVar("T")
# What a lost or refused connection looks like through asyncpg (a query error is not among them).
DATABASE_DOWN = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
    asyncpg.InternalClientError, asyncpg.AdminShutdownError,
)
A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class Tick:
    """Time for the timer rules (signal_lost) to look at every device."""

    now_ms: int


def rule_config(settings: Settings) -> RuleConfig:
    """Rule parameters from the settings."""
    return RuleConfig(
        h3_resolution=settings.h3_resolution, max_speed_kmh=settings.max_speed_kmh,
        silence_limit_s=tuple(settings.silence_limit_s.items()),
    )


# Two-device rules: one stray fix must not open a separation alert; the proximity rules open at once
# (a victim's safety; contact has its own dwell time) and, like separation, clear after two checks.
PAIR_RULE_DEBOUNCE = {
    "device_separation": Debounce(open_checks=2, clear_checks=2),
    "victim_proximity": Debounce(clear_checks=2),
    "subject_contact": Debounce(clear_checks=2),
}


def debounce_policies(settings: Settings) -> dict[str, Debounce]:
    """Zone rules wait for evidence (GPS jitter); device and timer rules act on the first report."""
    zone = Debounce(
        open_checks=settings.zone_open_fixes, open_ms=int(settings.zone_open_s * 1000),
        clear_checks=settings.zone_clear_fixes, clear_ms=int(settings.zone_clear_s * 1000),
    )
    zone_rules = ("zone_exit", "zone_entry", "curfew_violation", "zone_approach")
    return dict.fromkeys(zone_rules, zone) | PAIR_RULE_DEBOUNCE


class Pipeline:
    """Owns the stages and the bounded queue between them; `run()` runs until cancelled."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, feed: AlertFeed) -> None:
        self.settings = settings
        self.pool = pool
        self.feed = feed
        self.decoder = MessageDecoder(
            prefix=settings.topic_prefix,
            max_payload_bytes=settings.max_payload_bytes,
            max_future_ms=settings.max_future_s * 1000,
            max_age_ms=settings.max_age_s * 1000,
        )
        self.batches: asyncio.Queue[IngestBatch | Tick] = asyncio.Queue(maxsize=settings.queue_max_batches)
        self._builder = BatchBuilder()
        self._config_dirty = True
        self._client: aiomqtt.Client | None = None
        self.engine: RuleEngine | None = None
        self.episodes: EpisodeBook | None = None
        self.batches_done = 0
        self.messages_received = 0
        self._processing = False
        self.mqtt_connected = False
        self._connection = 0  # bumped on every (re)connect: a PUBACK is only valid on its connection

    async def run(self) -> None:
        """Run every stage; a failing stage fails the whole pipeline loudly."""
        await self._load()
        listener = await asyncpg.connect(self.settings.database_url)
        await listener.add_listener("emwatch_config", self._on_config_change)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._consume_forever(), name="mqtt-consume")
                tg.create_task(self._flush_on_time(), name="batch-timer")
                tg.create_task(self._tick_forever(), name="rule-timer")
                tg.create_task(self._process(), name="evaluate-commit-publish")
        finally:
            await listener.close()

    # -- configuration ---------------------------------------------------------------------------

    def _on_config_change(self, *_: object) -> None:
        self._config_dirty = True

    async def _load(self) -> None:
        # Clear the flag before reading: a NOTIFY that arrives while we read must trigger another load.
        self._config_dirty = False
        registry = await registry_source.load_registry(self.pool, self.settings.h3_resolution)
        if self.engine is None or self.episodes is None:
            self.engine = RuleEngine(registry, rule_config(self.settings))
            self.engine.seed(await registry_source.load_device_positions(self.pool))
            open_keys = await registry_source.load_open_episodes(self.pool)
            self.episodes = EpisodeBook(registry, open_keys, debounce_policies(self.settings))
        else:
            self.engine.replace_registry(registry)
            self.episodes.rebind(registry)
        metrics.REGISTRY_RELOADS.inc()
        log.info("registry loaded: %d devices, %d subjects, %d zones",
                 len(registry.device_ids), len(registry.subject_ids), len(registry.zones.zones))

    # -- stage 1: MQTT → decode → micro-batch ----------------------------------------------------

    async def _consume_forever(self) -> None:
        assert self.settings.mqtt_url is not None
        backoff = 0.5
        while True:
            try:
                client = make_client(self.settings.mqtt_url, self.settings.mqtt_client_id, manual_ack=True)
                async with client:
                    for topic in subscription_topics(self.settings.topic_prefix):
                        await client.subscribe(topic, qos=1)
                    self._connection += 1
                    self._client, self.mqtt_connected, backoff = client, True, 0.5
                    broker = BrokerAddress.parse(self.settings.mqtt_url)  # never log the password
                    log.info("subscribed to %s:%d", broker.host, broker.port)
                    async for message in client.messages:
                        await self._accept(message.topic.value, message.payload, (message.mid, message.qos))
            except aiomqtt.MqttError as exc:
                self._client, self.mqtt_connected = None, False
                log.warning("MQTT connection lost (%s); reconnecting in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 15.0)

    async def _accept(self, topic: str, payload: object, receipt: tuple[int, int] | None = None) -> None:
        if self._builder.receipts and self._builder.connection != self._connection:
            await self._flush()  # a batch acknowledges on one connection only
        raw = payload if isinstance(payload, bytes) else str(payload).encode()
        decoded = self.decoder.decode(topic, raw, int(time.time() * 1000))
        metrics.MESSAGES_RECEIVED.inc()
        self.messages_received += 1
        metrics.FIXES_RECEIVED.inc(len(decoded.fixes))
        self._builder.add(decoded, receipt, self._connection)
        if self._builder.fix_count >= self.settings.batch_max_fixes:
            await self._flush()

    async def _flush(self) -> None:
        builder, self._builder = self._builder, BatchBuilder()
        if builder.messages:
            await self.batches.put(builder.build())  # blocks when evaluation lags: back-pressure
            metrics.QUEUE_DEPTH.set(self.batches.qsize())

    async def _flush_on_time(self) -> None:
        window = self.settings.batch_max_ms / 1000
        while True:
            await asyncio.sleep(window / 2)
            b = self._builder
            if b.messages and time.monotonic() - b.first_received >= window:
                await self._flush()

    # -- stage 2: rules → episodes → store → feed ------------------------------------------------

    async def _process(self) -> None:
        while True:
            batch = await self.batches.get()
            self._processing = True
            metrics.QUEUE_DEPTH.set(self.batches.qsize())
            started = time.perf_counter()
            try:
                if isinstance(batch, Tick):
                    await self.process_tick(batch.now_ms)
                else:
                    await self.process_batch(batch)
            finally:
                self._processing = False
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            self.batches_done += 1

    @property
    def idle(self) -> bool:
        """Nothing received is waiting to be batched, evaluated or committed."""
        return self._builder.messages == 0 and self.batches.empty() and not self._processing

    async def process_batch(self, batch: IngestBatch) -> list[AlertEvent]:
        """Evaluate, commit and publish one batch; returns the committed alert events."""
        assert self.engine is not None and self.episodes is not None
        if not self._config_dirty and (unknown := self.engine.unknown_devices(batch)):
            # A device registered a moment ago may not have reached us through NOTIFY yet.
            self._config_dirty = bool(await registry_source.known_device_ids(self.pool, unknown))
        if self._config_dirty:
            await self._load()
        evaluation = self.engine.evaluate(batch, self.episodes.open_pairs())
        alerts = self.episodes.update(evaluation.observations)
        alerts += self.episodes.late_episodes(evaluation.late_observations)
        stored, committed = await self._with_database(lambda conn: commit_batch(conn, evaluation, alerts))
        # Committed: now, and only now, the broker may forget these messages (ack after durable).
        if batch.receipts and self._client is not None and batch.connection == self._connection:
            acknowledge(self._client, batch.receipts)
        self.feed.publish(committed)
        await self._publish_alerts_mqtt(committed)
        _count(evaluation, stored, committed)
        return committed

    async def _tick_forever(self) -> None:
        # Through the same queue as batches: timer alerts and fix alerts share one writer and order.
        while True:
            await asyncio.sleep(self.settings.rules_tick_s)
            await self.batches.put(Tick(int(time.time() * 1000)))

    async def process_tick(self, now_ms: int) -> list[AlertEvent]:
        """Run the timer rules over all devices; commit and publish what they raise."""
        assert self.engine is not None and self.episodes is not None
        if self._config_dirty:
            await self._load()
        alerts = self.episodes.update(self.engine.tick(now_ms))
        if not alerts:
            return []
        committed = await self._with_database(lambda conn: _in_transaction(conn, write_alert_events, alerts))
        self.feed.publish(committed)
        await self._publish_alerts_mqtt(committed)
        for ev in committed:
            metrics.ALERT_EVENTS.labels(ev.rule, ev.type).inc()
        return committed

    async def _with_database(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work` on a connection, retrying with backoff while the database is unreachable.

        Episode state has already moved on, so the same writes are retried, never re-derived.
        Meanwhile nothing is acknowledged: the bounded queue fills and the broker keeps the backlog.
        """
        backoff = 0.2
        while True:
            try:
                async with self.pool.acquire() as conn:
                    return await work(conn)
            except DATABASE_DOWN as exc:
                metrics.COMMIT_RETRIES.inc()
                log.warning("database unavailable (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _publish_alerts_mqtt(self, events: list[AlertEvent]) -> None:
        client = self._client
        if not events or client is None or not self.settings.publish_alerts_mqtt:
            return
        for ev in events:
            topic = f"{self.settings.topic_prefix}/alerts/{ev.jurisdiction_id}/{ev.subject_id}"
            with contextlib.suppress(aiomqtt.MqttError):  # stored and on the feed already; MQTT is a copy
                await client.publish(topic, orjson.dumps(ev.to_message()), qos=1)


def _count(evaluation: Evaluation, stored: int, committed: list[AlertEvent]) -> None:
    metrics.BATCH_SIZE.observe(len(evaluation.batch))
    metrics.FIXES_STORED.inc(stored)
    metrics.FIXES_LATE.inc(len(evaluation.batch) - int(evaluation.batch.fresh.sum()))
    metrics.DEVICE_EVENTS.inc(len(evaluation.events))
    for d in evaluation.dead:
        metrics.FIXES_INVALID.labels(metrics.dead_letter_reason_label(d.reason)).inc()
    for ev in committed:
        metrics.ALERT_EVENTS.labels(ev.rule, ev.type).inc()


async def _in_transaction(
    conn: asyncpg.Connection, work: Callable[[asyncpg.Connection, A], Awaitable[T]], arg: A
) -> T:
    async with conn.transaction():
        return await work(conn, arg)
