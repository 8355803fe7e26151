"""Stage-2 agent and emitter: merge partition snapshots, publish ``cx.scores``, set gauges."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import faust

from streams import codecs, delivery, stores
from streams.agents import gaps
from streams.agents.expiry import MERGE_CHUNK, ExpiryScan, ExpirySchedule
from streams.aggregate import OFFSET, Emission, Merger
from streams.alerting import AlertConfig, AlertEngine
from streams.context import Context
from streams.producing import send_each
from streams.settings import Settings, parse_duration
from streams.supervision import supervise
from streams.tables import MergeTable
from streams.topics import ALERTS, SCORES

log = logging.getLogger(__name__)

# Per tick, the time given to members that are due only because their windows slid (the rest
# wait for the next tick, Merger.due): a slide of the 5m window held the loop for up to 120 ms.
SLIDE_BUDGET_S = 0.01
# Partials whose input was ingested less than this long ago are evaluated as soon as they are
# applied (MergeService.emit_fresh); older ones (a replay, a backlog) wait for the tick, which
# evaluates each member once for several batches: evaluating them at once too made ~25% more
# score records in the bench's replay (README, "2026-12-03, third session").
LIVE_INPUT_MS = 2000
# Members with older input (a replay, a backlog) or due only because a window slid: at most one
# evaluation per this interval (the emit interval when that is longer). Their scores are on
# their way to the present; evaluating each member at the emit interval (the bench's 0.1 s)
# was ~10% of the worker's time in a replay (2026-12-07).
BACKLOG_EMIT_MS = 1000


def alert_config(s: Settings) -> AlertConfig:
    return AlertConfig(
        short_window=s.alert_short_window,
        baseline_window=s.alert_baseline_window,
        rules=s.alert_rules,
        min_sample=s.alert_min_sample,
        alpha=s.alert_alpha,
        drop_z=s.alert_drop_z,
        for_ms=parse_duration(s.alert_for) * 1000,
        min_baseline=s.alert_min_baseline,
        min_delta_nps=s.alert_min_delta_nps,
        min_delta_csat=s.alert_min_delta_csat,
        min_delta_ces=s.alert_min_delta_ces,
        slo_first_response_s=s.alert_slo_first_response_s,
        cooldown_ms=parse_duration(s.alert_cooldown) * 1000,
    )


class MergeService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        s = ctx.settings
        app = ctx.app
        self.table = MergeTable(
            app, name="merge", partitions=s.partitions, beacon=app.tables.beacon
        )
        app.tables.add(self.table)
        self.merger = Merger(
            self.table,
            ctx.windows,
            partitions=s.partitions,
            min_sample=s.min_sample,
            emit_interval_ms=int(s.emit_interval * 1000),
            alerts=AlertEngine(alert_config(s)) if s.alerts_enabled else None,
            backlog_interval_ms=BACKLOG_EMIT_MS,
            live_ms=LIVE_INPUT_MS,
        )
        self.lock = asyncio.Lock()
        self.owned: set[int] | None = None
        self.gauge_labels: dict[tuple[str, str, str], set[tuple[str, str, str, str]]] = {}
        # ^ member (family, dimension, member) -> label sets of its cx_score series
        self.expiry = ExpirySchedule(s.retention_s)
        self.scan = ExpiryScan(MERGE_CHUNK)
        topic = app.topic(
            ctx.partials_topic,
            key_serializer="raw",
            value_serializer="raw",
            partitions=s.partitions,
        )
        supervise(app.agent(topic, name="merge")(self.consume), ctx.crashes)
        self.partials_log = gaps.InputLog(s.bootstrap, ctx.partials_topic)
        app.timer(max(0.05, s.emit_interval / 4), name="emit-scores")(self.tick)

    def table_keys(self) -> Iterable[str]:
        return stores.scan_keys(self.table)

    def owned_partitions(self) -> set[int]:
        name = self.ctx.partials_topic
        return {tp.partition for tp in self.ctx.app.assignor.assigned_actives() if tp.topic == name}

    def ready(self) -> bool:
        app = self.ctx.app
        return not app.rebalancing and not app.in_recovery

    async def consume(self, stream: faust.StreamT) -> None:
        async for batch in delivery.batches(stream, 5000, 0.05, self.applied):
            async with self.lock:
                records = await gaps.in_order(batch, self.applied, self.partials_log)
                applied = {q: self.applied_offset(q) for q in {r.partition for r in records}}
                done: dict[int, int] = {}
                now_ms = int(time.time() * 1000)
                for r in records:
                    q = r.partition
                    if r.offset <= applied[q]:
                        continue  # applied before (a redelivery after a crash or rebalance)
                    applied[q] = done[q] = r.offset
                    if r.raw is None:  # internal topic: nothing else writes it; never crash
                        log.warning("partials[%d]@%d: empty record skipped", q, r.offset)
                        continue
                    key = r.key.decode() if r.key else ""
                    self.merger.apply(key, codecs.loads(r.raw), q, now_ms)
                # The members these partials changed are evaluated now, not at the next tick:
                # a tick waited for this batch's seal (two broker round trips under the lock)
                # and then up to a tick interval more (docs/design.md, "Latency").
                emitted = await self.emit_fresh()
                await self.seal(set(done) | emitted, done)

    async def emit_fresh(self) -> set[int]:
        """Publish the score records of the members with new live input that are due
        (throttled per member as in :meth:`tick`); the partitions whose state that changed."""
        if not self.ready() or self.owned is None or self.owned_partitions() != self.owned:
            return set()  # the tick restores the registry first
        now_ms = int(time.time() * 1000)
        emission = self.merger.due(now_ms, self.owned, live_since=now_ms - LIVE_INPUT_MS)
        await self.publish(emission)
        return emission.partitions

    def applied_offset(self, q: int) -> int:
        """The last partials offset of ``q`` applied to the table (-1: none)."""
        return int((self.table.get(f"#wm|{q}") or {}).get(OFFSET, -1))

    def applied(self, q: int) -> list[int] | None:
        offset = self.applied_offset(q)
        return None if offset < 0 else [offset]

    async def seal(self, partitions: set[int], offsets: dict[int, int] | None = None) -> None:
        """Flush, then write each partition's watermark record last (Tansu end-offset quirk),
        with the last partials offset applied (``#o``)."""
        if not partitions:
            return
        # The staged state goes out first, so that one wait covers it and the scores and
        # alerts (one broker round trip less per tick).
        await self.table.send_staged()
        await self.ctx.app.producer.flush()
        await self.table.changelog_sent()  # flush() is no barrier for table writes
        value = self.merger.seal_value()
        for q in partitions:
            offset = (offsets or {}).get(q, self.applied_offset(q))
            self.table[f"#wm|{q}"] = {**value, OFFSET: offset}
        await self.table.changelog_sent()

    async def tick(self) -> None:
        if not self.ready():
            return
        owned = self.owned_partitions()
        async with self.lock:
            if owned != self.owned:
                self.owned = owned
                self.merger.restore(owned)
                self.drop_unowned_gauges()
            emission = self.merger.due(int(time.time() * 1000), owned, budget_s=SLIDE_BUDGET_S)
            await self.publish(emission)
            emission.partitions |= self.merger.expire_dead_buckets(owned)
            # Per input topic: one topic's watermark can stand still (or far ahead) while the
            # others advance, and a max over all topics then never moved a step (a replay piled
            # up 40k dead merge keys between the 30 s rounds). A list, not any(): every topic's
            # schedule must record the step it took.
            wall = self.expiry.wall_due()
            steps = [self.expiry.due(topic, max(srcs.values()), wall)
                     for topic, srcs in self.merger.watermarks.items() if srcs]  # fmt: skip
            step = self.scan.step(["all"] if wall or any(steps) else [], self.table_keys)
            if step is not None:
                for key in self.merger.expired_keys(owned, step[1]):
                    self.merger.drop(key)
                emission.partitions |= owned
            await self.seal(emission.partitions)
            # writes without a sealed partition (alert states): our tables stage changelog
            # messages until changelog_sent() (streams/tables.py)
            await self.table.changelog_sent()

    async def publish(self, emission: Emission) -> None:
        app, tel = self.ctx.app, self.ctx.telemetry
        if emission.records:
            await send_each(app, SCORES, (
                (key.encode(), record, None) for key, record in emission.records
            ), codecs.dumps)  # fmt: skip
        tel.scores_emitted.inc(len(emission.records))
        if emission.alerts:
            await send_each(app, ALERTS, (
                (t.key.encode(), t.record, None) for t in emission.alerts
            ), codecs.dumps)  # fmt: skip
        for rule, dim, name, on in emission.firing:
            tel.alerts_firing.labels(rule, dim, name).set(1 if on else 0)
        for member, labels, value, n, low, high in emission.gauges:
            tel.set_score(labels, value, n, low, high)
            self.gauge_labels.setdefault(member, set()).add(labels)
        for seconds in emission.processing_s:
            tel.processing.observe(seconds)

    def drop_unowned_gauges(self) -> None:
        for member, labels in list(self.gauge_labels.items()):
            if member not in self.merger.members:
                for label in labels:
                    self.ctx.telemetry.drop_score(label)
                del self.gauge_labels[member]
