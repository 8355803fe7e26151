"""Stage-1 agent: decode, dedupe and fold a batch of one input topic (docs/design.md).

The same adapter serves all four input topics; what differs per topic lives in
:mod:`streams.state` (the pure fold).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, cast

import faust

from streams import codecs, delivery, stores
from streams.agents import gaps
from streams.agents.expiry import ExpiryScan, ExpirySchedule, chunk_for
from streams.aggregate import partition_of
from streams.context import Context
from streams.producing import send_each
from streams.state import BatchResult, Folder
from streams.supervision import supervise
from streams.tables import SourcePartitionedTable
from streams.topics import DEAD_LETTER, FOLLOWUPS


def register(ctx: Context, topic_name: str, table_name: str) -> faust.types.AgentT:
    app, s = ctx.app, ctx.settings
    topic = app.topic(
        topic_name, key_serializer="raw", value_serializer="raw", partitions=s.partitions
    )
    table = SourcePartitionedTable(
        app, name=table_name, partitions=s.partitions, beacon=app.tables.beacon
    )
    app.tables.add(table)
    folder = Folder(
        topic_name,
        table,
        ctx.windows,
        s.dimensions,
        max_members=s.max_members,
        retention_ms=s.retention_s * 1000,
        late_ms=s.late_after_s * 1000,
        max_future_ms=s.max_future_s * 1000,
        max_bytes=s.max_message_bytes,
    )
    expiry = ExpirySchedule(s.retention_s)
    scan = ExpiryScan()
    input_log = gaps.InputLog(s.bootstrap, topic_name)

    async def fold(stream: faust.StreamT) -> None:
        # Each batch is acked (its offsets may be committed) only when the next one is asked
        # for, i.e. after commit() below returned (streams/delivery.py).
        def seal(p: int) -> Any:
            return table.get(f"{p}|p")

        async for batch in delivery.batches(stream, s.batch_size, s.batch_within, seal):
            records = await gaps.in_order(batch, seal, input_log)
            result = folder.fold(records, int(time.time() * 1000))
            wall_due = expiry.wall_due()
            due = []
            for p in {r.partition for r in records}:
                wm = (seal(p) or (None, None))[1]
                if wm is not None and expiry.due(p, wm, wall_due):
                    due.append(p)
            step = scan.step(due, lambda: stores.scan_keys(table), chunk_for(len(records)))
            gone: list[str] = []  # expired dedupe entries (SourcePartitionedTable.drop_dedupe)
            if step is not None:
                writes, touched = result.writes, result.touched
                for key in folder.expired_keys(cast(set[int], step[0]), step[1]):
                    if key.startswith("d|", key.find("|") + 1):
                        gone.append(key)  # not this batch's: its new entries are live
                    # Not what this batch wrote (judged on its stored value, which the batch
                    # replaced) or folded into: a replay of the batch after a crash before its
                    # seal folds into that bucket again, from its stored counts
                    # (_PartitionBatch.expire_buckets).
                    elif key not in writes and key not in touched:
                        writes[key] = None
            await commit(ctx, table, topic_name, result, gone)

    return supervise(app.agent(topic, name=table_name)(fold), ctx.crashes)


async def commit(
    ctx: Context, table: Any, topic_name: str, result: BatchResult, gone: list[str] | None = None
) -> None:
    """Write state, publish, flush, then seal each partition with its progress record."""
    producer, s, tel = ctx.app.producer, ctx.settings, ctx.telemetry
    table.write_many(result.writes)  # value None: delete
    table.write_dedupe(result.dedupe)
    if gone:
        table.drop_dedupe(gone)
    await table.send_staged()  # the state goes out while the other sends are prepared
    app, dumps = ctx.app, codecs.dumps
    if result.dead_letters:
        await send_each(app, DEAD_LETTER, (
            (f"{dl['topic']}:{dl['partition']}:{dl['offset']}".encode(), dl, None)
            for dl in result.dead_letters
        ), dumps)  # fmt: skip
    if result.followups:
        await send_each(app, FOLLOWUPS, (
            (fu["customer_id"].encode(), fu, None) for fu in result.followups
        ), dumps)  # fmt: skip
    partials, ts = ctx.partials_topic, result.min_timestamp_ms
    for _member_key, value in result.partials:
        value["ts"] = ts
    await send_each(app, partials, (
        (member_key.encode(), value, partition_of(member_key, s.partitions))
        for member_key, value in result.partials
    ), dumps)  # fmt: skip
    # after the batch's partials in each partials partition: stage 2 applies them in order
    await send_each(app, partials, (
        (b"#wm", {"wm_topic": topic_name, "s": f"{topic_name}:{p}", "wm": wm}, q)
        for p, wm in result.watermarks.items() for q in range(s.partitions)
    ), dumps)  # fmt: skip
    # Tansu reports a partition's end offset as the base offset of its last record batch + 1,
    # so Faust's changelog recovery stops before the tail of a multi-record batch. Flushing
    # first makes the progress record a batch of its own: the last batch at rest is one record.
    await producer.flush()
    # producer.flush() is no barrier for table writes (Faust's ProducerBuffer, see
    # streams/tables.py): wait for the broker's acks before the seal, and for the seal's before
    # the batch is acked (streams/delivery.py), so a commit never covers state still in a queue.
    await table.changelog_sent()
    table.write_many(result.progress)
    await table.changelog_sent()
    now = time.time()
    for outcome, count in result.outcomes.items():
        tel.events.labels(topic_name, outcome).inc(count)
    for reason, count in result.dead_reasons.items():
        tel.dead_letters.labels(topic_name, reason).inc(count)
    # One labels() lookup per distinct label set of the batch, not one per event (~1.2 us each).
    cap = tel.cap
    for (survey, cat, segment, channel), n in Counter(result.responses).items():
        tel.responses.labels(survey, cat, cap("segment", segment), cap("channel", channel)).inc(n)
    lost: dict[str, list[float]] = {}
    for segment, mrr in result.cancellations:
        lost.setdefault(segment, []).append(mrr)
    for segment, mrrs in lost.items():
        seg = cap("segment", segment)
        tel.cancellations.labels(seg).inc(len(mrrs))
        counter = tel.cancelled_mrr.labels(seg)
        for mrr in mrrs:  # one by one: the same float sum as before
            counter.inc(mrr)
    seconds_by: dict[tuple[str, str], list[float]] = {}
    for kind, channel, seconds in result.latencies:
        seconds_by.setdefault((kind, channel), []).append(seconds)
    for (kind, channel), values in seconds_by.items():
        hist = tel.first_response if kind == "first_response" else tel.resolution
        child = hist.labels(cap("channel", channel))
        for seconds in values:
            child.observe(seconds)
    if result.watermarks:
        tel.watermark_lag.labels(topic_name).set(now - max(result.watermarks.values()) / 1000)
