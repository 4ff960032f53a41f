"""The data path in one place, as stages joined by bounded queues:

    MQTT → decode → micro-batch ─[batches]→ rules → episodes → seq → feed + MQTT alerts
                                                      ─[write buffer]→ PostgreSQL → PUBACK

Alerts go out from memory the moment they are evaluated; the committer (store/committer.py) makes
them and their fixes durable in the same seq order, retrying while the database is away, and only then
acknowledges the fixes to the broker. A full write buffer blocks evaluation, which stops reading from
the broker: back-pressure, never a drop. Evaluation of batch N+1 overlaps the commit of batch N.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from emwatch import metrics
from emwatch.alerts.episodes import Debounce, EpisodeBook
from emwatch.alerts.timeline import Revision
from emwatch.feed.hub import AlertFeed, Delivery
from emwatch.feed.ledger import AlertLedger, EpisodeKey
from emwatch.heap import freeze_long_lived, release_free_heap, thaw_long_lived
from emwatch.ingest.batcher import BatchBuilder, IngestBatch
from emwatch.ingest.decode import MessageDecoder
from emwatch.ingest.source import BrokerLink, consume_forever
from emwatch.kernel_threads import default_thread_count
from emwatch.model import AlertEvent
from emwatch.rules.engine import Evaluation, RuleConfig, RuleEngine
from emwatch.settings import Settings
from emwatch.store import registry_source, writer
from emwatch.store.committer import DATABASE_DOWN, Committer
from emwatch.store.db import raise_if_cancelling
from emwatch.store.listener import ChannelListener
from emwatch.store.write_buffer import PendingWrite, WriteBuffer

log = logging.getLogger(__name__)

BATCH_GROWTH = 4  # a batch may grow to this many times batch_max_fixes while evaluation is busy
LISTEN_WAIT_S = 10.0  # for the registry's LISTEN before the first load; without it, a later resync reloads


@dataclass(frozen=True, slots=True)
class Tick:
    """Time for the timer rules (signal_lost) to look at every device."""

    now_ms: int


def rule_config(settings: Settings) -> RuleConfig:
    """Rule parameters from the settings."""
    return RuleConfig(
        h3_resolution=settings.h3_resolution, max_speed_kmh=settings.max_speed_kmh,
        silence_limit_s=tuple(settings.silence_limit_s.items()),
        reorder_horizon_s=settings.reorder_horizon_s,
        kernel_threads=settings.kernel_threads or default_thread_count(),
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


async def _join(task: asyncio.Task[None]) -> None:
    """Await a task started outside a TaskGroup, so that its failure fails the group."""
    await task


class Pipeline:
    """Owns the stages and the bounded queues between them; `run()` runs until cancelled."""

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
        self._client: BrokerLink | None = None
        self.engine: RuleEngine | None = None
        self.episodes: EpisodeBook | None = None
        self.batches_done = 0
        self.messages_received = 0
        self._processing = False
        self.mqtt_connected = False
        # Registry changes arrive by NOTIFY; the listener reconnects after a database restart.
        self.config_listener = ChannelListener(settings.database_url or "", "emwatch_config",
                                               self._on_config_change)
        self._connection = 0  # bumped on every (re)connect: a PUBACK is only valid on its connection
        self.writes = WriteBuffer(settings.commit_buffer_max_batches, settings.commit_buffer_max_fixes)
        self.ledger = AlertLedger((), (), horizon_ms=int(settings.reorder_horizon_s * 1000))
        self.committer = Committer(pool, self.writes, self.ledger, self._on_durable,
                                   settings.commit_batches_per_transaction, settings.commit_writers)
        feed.on_provisional = self._renumber_later

    async def run(self) -> None:
        """Run every stage; a failing stage fails the whole pipeline loudly. However it ends, it no
        longer claims a broker connection (the health check reads it)."""
        # LISTEN before the first load: the listener's resync notice then precedes the load, which
        # clears it. Listening after the load made every start read the whole registry twice, the
        # second time in the way of the first batch (seconds at 100k subjects).
        listener = asyncio.create_task(self.config_listener.run(), name="config-listener")
        try:
            await self._start()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_join(listener), name="config-listener")
                tg.create_task(self._consume_forever(), name="mqtt-consume")
                tg.create_task(self._flush_on_time(), name="batch-timer")
                tg.create_task(self._tick_forever(), name="rule-timer")
                tg.create_task(self._evaluate_forever(), name="evaluate-publish")
                tg.create_task(self.committer.run(), name="commit-ack")
        finally:
            listener.cancel()
            # Cancellation skips the MQTT stage's own `except`: clear its state here.
            self._client, self.mqtt_connected = None, False

    async def _start(self) -> None:
        """Read what the stages start from, retrying while the database goes away under us (the
        start waited for it, but it may restart a moment later: a chaos run caught that window)."""
        delay = 0.5
        while True:
            try:
                await self._start_feed()
                await self.config_listener.wait_listening(LISTEN_WAIT_S)
                await self._load()
                return
            except DATABASE_DOWN as exc:
                raise_if_cancelling()
                log.warning("start postponed: database unavailable (%s: %s); retrying in %.1f s",
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def _start_feed(self) -> None:
        """Continue the feed's seqs and the alert ids after what the database holds."""
        async with self.pool.acquire() as conn:
            self.feed.start_at(await writer.adopt_provisional(conn))
            rows = await conn.fetch(
                "SELECT id, subject_id, rule, zone_id FROM alerts WHERE cleared_at IS NULL"
            )
            self.ledger.reserve(await writer.reserve_alert_ids(conn, self.ledger.ids_wanted))
        self.ledger.open_alerts({(r["subject_id"], r["rule"], r["zone_id"] or ""): r["id"] for r in rows})

    # -- configuration ---------------------------------------------------------------------------

    def _on_config_change(self, *_: object) -> None:
        self._config_dirty = True

    async def _reload_if_needed(self, batch: IngestBatch | None) -> None:
        if not self.committer.database_up:
            return  # evaluate with the registry we have; reload once the database is back
        engine = self.engine
        assert engine is not None
        try:
            if batch is not None and not self._config_dirty and (unknown := engine.unknown_devices(batch)):
                # A device registered a moment ago may not have reached us through NOTIFY yet.
                self._config_dirty = bool(await registry_source.known_device_ids(self.pool, unknown))
            if self._config_dirty:
                await self._load()
        except DATABASE_DOWN as exc:
            raise_if_cancelling()
            self._config_dirty = True
            log.warning("registry reload postponed: database unavailable (%s)", exc)

    async def _load(self) -> None:
        # Clear the flag before reading: a NOTIFY that arrives while we read must trigger another load.
        self._config_dirty = False
        thaw_long_lived()  # the snapshot being replaced goes back to the collector
        # At the first load each device's newest fix is read while the registry loads: PostgreSQL finds
        # them (~11 s for 700k devices: RESULTS.md session 10) while the service parses zones.
        first = self.engine is None or self.episodes is None
        positions = asyncio.ensure_future(registry_source.load_device_positions(self.pool)) if first else None
        try:
            registry = await registry_source.load_registry(self.pool, self.settings.h3_resolution)
        except BaseException:
            if positions is not None:
                positions.cancel()
                await asyncio.gather(positions, return_exceptions=True)
            raise
        if self.engine is None or self.episodes is None:
            assert positions is not None
            self.engine = RuleEngine(registry, rule_config(self.settings))
            self.engine.seed(await positions)
            open_keys = await registry_source.load_open_episodes(self.pool)
            self.episodes = EpisodeBook(registry, open_keys, debounce_policies(self.settings),
                                        horizon_ms=int(self.settings.reorder_horizon_s * 1000))
        else:
            self.engine.replace_registry(registry)
            self.episodes.rebind(registry)
        release_free_heap()  # the rows just parsed are garbage now
        freeze_long_lived()  # and what stays is scanned by no collection until the next load
        metrics.REGISTRY_RELOADS.inc()
        log.info("registry loaded: %d devices, %d subjects, %d zones",
                 len(registry.device_ids), len(registry.subject_ids), len(registry.zones.zones))

    # -- stage 1: MQTT → decode → micro-batch ----------------------------------------------------

    async def _consume_forever(self) -> None:
        # the MQTT library is the settings' choice (ingest/source.py); it reconnects on its own
        await consume_forever(self.settings, self._accept, self._on_link)

    def _on_link(self, link: BrokerLink | None) -> None:
        if link is not None:
            self._connection += 1  # a PUBACK is only sent on the connection its message came by
        self._client, self.mqtt_connected = link, link is not None

    async def _accept(self, topic: str, payload: object, receipt: tuple[int, int] | None = None) -> None:
        if self._builder.receipts and self._builder.connection != self._connection:
            await self._flush()  # a batch acknowledges on one connection only
        raw = payload if isinstance(payload, bytes) else str(payload).encode()
        decoded = self.decoder.decode(topic, raw, int(time.time() * 1000))
        metrics.MESSAGES_RECEIVED.inc()
        self.messages_received += 1
        metrics.FIXES_RECEIVED.inc(decoded.fix_count)
        self._builder.add(decoded, receipt, self._connection)
        count = self._builder.fix_count
        # Under load a batch grows while evaluation is busy with the ones before it (up to BATCH_GROWTH x
        # the size, and never past the batch_max_ms window): fewer, larger batches cost the rules, the
        # committer and PostgreSQL less per fix, and a fix waits no longer than it would in the queue.
        if count >= self.settings.batch_max_fixes and (
            self.batches.empty() or count >= BATCH_GROWTH * self.settings.batch_max_fixes
        ):
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

    # -- stage 2: rules → episodes → seq → feed/MQTT → write buffer -----------------------------

    async def _evaluate_forever(self) -> None:
        while True:
            raise_if_cancelling()
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
            # A queue with batches waiting never suspends `get`: yield, or the committer's round trips
            # (same thread) wait behind a whole backlog of evaluations.
            await asyncio.sleep(0)

    @property
    def idle(self) -> bool:
        """Nothing received is waiting to be batched, evaluated, committed or acknowledged."""
        return (self._builder.messages == 0 and self.batches.empty() and not self._processing
                and len(self.writes) == 0 and not self.committer.busy)

    async def process_batch(self, batch: IngestBatch) -> list[AlertEvent]:
        """Evaluate one batch, publish what it raised, queue it for commit; returns the published events."""
        assert self.engine is not None and self.episodes is not None
        await self._reload_if_needed(batch)
        evaluation = self.engine.evaluate(batch, self.episodes.open_pairs())
        alerts = self.episodes.update(evaluation.observations)
        alerts += self.episodes.late_episodes(evaluation.late_observations)
        # Late fixes may also move the bounds of alerts already raised: `revised` events, after the alerts.
        revisions = [((k.subject_id, k.rule, k.zone_id), r) for k, r in self.episodes.take_revisions()]
        write = PendingWrite(evaluation, receipts=list(batch.receipts), connection=batch.connection)
        metrics.REORDER_HISTORY_FIXES.set(self.engine.history.fixes)
        metrics.REORDER_HISTORY_BYTES.set(self.engine.history.nbytes)
        return await self._publish(alerts, write, revisions)

    async def _tick_forever(self) -> None:
        # Through the same queue as batches: timer alerts and fix alerts share one seq order.
        while True:
            await asyncio.sleep(self.settings.rules_tick_s)
            await self.batches.put(Tick(int(time.time() * 1000)))

    async def process_tick(self, now_ms: int) -> list[AlertEvent]:
        """Run the timer rules over all devices; publish what they raise and queue it for commit."""
        assert self.engine is not None and self.episodes is not None
        await self._reload_if_needed(None)
        alerts = self.episodes.update(self.engine.tick(now_ms))
        return await self._publish(alerts, PendingWrite()) if alerts else []

    async def _publish(
        self, alerts: list[AlertEvent], write: PendingWrite,
        revisions: Sequence[tuple[EpisodeKey, Revision]] = (),
    ) -> list[AlertEvent]:
        admitted = self.ledger.admit(alerts, await self._late_on_record(alerts))
        admitted += self.ledger.revise(revisions)
        await self.writes.wait_for_room(write.fixes)  # back-pressure: blocks while the buffer is full
        # No await from here to `put`: seqs enter the write buffer in the order they were given, so the
        # committed events are always a prefix of the published ones (feed replay relies on it).
        delivery = self.feed.append(admitted)
        write.alerts = delivery.events
        self.writes.put(write)
        await self._publish_alerts_mqtt(delivery)
        return write.alerts

    async def _late_on_record(self, alerts: list[AlertEvent]) -> set[tuple[str, str, str]]:
        """Late violations already on record (redelivered fixes) are not alerted twice. Asked only while
        the database answers: during an outage a late alert goes out (at least once, never lost)."""
        late = [ev for ev in alerts if ev.late and ev.type == "alert"]
        if not late or not self.committer.database_up:
            return set()
        try:
            async with self.pool.acquire(timeout=2) as conn:
                return await writer.already_alerted(conn, late)
        except (*DATABASE_DOWN, TimeoutError) as exc:
            log.warning("late alerts not checked against the record (%s)", exc)
            return set()

    # -- stage 3: commit (store/committer.py) → PUBACK -------------------------------------------

    def _on_durable(self, writes: list[PendingWrite]) -> None:
        # Committed: now, and only now, the broker may forget these messages (ack after durable).
        client = self._client
        for w in writes:
            if w.receipts and client is not None and w.connection == self._connection:
                client.acknowledge(w.receipts)
            if w.evaluation is not None:
                _count(w.evaluation, w.stored)
            for ev in w.alerts:
                metrics.ALERT_EVENTS.labels(ev.rule, ev.type).inc()
        self.feed.committed(max(w.last_seq for w in writes))

    def _renumber_later(self, provisional: int, final: AlertEvent) -> None:
        """A lifecycle event got its feed seq: the renumbering joins the writes in that seq order."""
        self.writes.put(PendingWrite(renumber=(provisional, final.seq)))

    async def _publish_alerts_mqtt(self, delivery: Delivery) -> None:
        client = self._client
        if not delivery.events or client is None or not self.settings.publish_alerts_mqtt:
            return
        prefix = self.settings.topic_prefix
        for ev, message in zip(delivery.events, delivery.messages, strict=True):
            # a copy, best effort: the alert is on the feed already and stored soon
            await client.publish(f"{prefix}/alerts/{ev.jurisdiction_id}/{ev.subject_id}", message)


def _count(evaluation: Evaluation, stored: int) -> None:
    metrics.BATCH_SIZE.observe(len(evaluation.batch))
    metrics.FIXES_STORED.inc(stored)
    metrics.FIXES_LATE.inc(len(evaluation.batch) - int(evaluation.batch.fresh.sum()))
    metrics.DEVICE_EVENTS.inc(len(evaluation.events))
    for d in evaluation.dead:
        metrics.FIXES_INVALID.labels(metrics.dead_letter_reason_label(d.reason)).inc()
