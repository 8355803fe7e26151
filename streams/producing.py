"""Messages to the producer: changelog writes as aiokafka record batches, the rest one by one.

Faust's ``Producer.send`` -> aiokafka's ``send`` costs ~10-15 us per message (metadata wait,
serializers, partitioner, a future, the accumulator's bookkeeping). The tables' changelog
writes (:mod:`streams.tables`: each changed bucket and interaction, a dedupe bundle per
partition and batch; ~1.1 per event before the bundles) are appended to a ``BatchBuilder``
(aiokafka's ``create_batch``: the C record builder) and each full batch goes out with
``send_batch``: one future per batch (:func:`send_partition`). Partials, follow-ups, dead
letters, score records and alerts (~0.2 per event) go through ``send`` (:func:`send_each`),
with the partition of a keyed message computed once per key: aiokafka's partitioner (murmur2,
what ``send`` picks, so a compacted topic such as ``cx.scores`` keeps each key in one
partition) is pure Python.

Relies on aiokafka's ``AIOKafkaProducer.create_batch``/``send_batch``/``_partition``,
``_metadata.partitions_for_topic`` and ``client._wait_on_metadata`` (aiokafka 0.12-0.14, pinned in pyproject.toml;
``tests/unit/test_producing.py`` fails if they change) and on the aiokafka driver's
``Producer._ensure_producer()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

Sent = tuple["asyncio.Future[Any]", int]  # a batch's future and its number of messages

# (topic, key) -> (the topic's partition count, the key's partition), by aiokafka's
# partitioner: its murmur2 is pure Python, ~5-10 us a key, and most keys come again (a score
# key every emission, a customer's follow-ups). Bounded: cleared when full.
_PARTITIONS: dict[tuple[str, bytes], tuple[int, int]] = {}
PARTITIONS_MAX = 100_000


def batch_producer(app: Any) -> Any | None:
    """The started aiokafka producer behind Faust's, or None (``agent.test_context()``,
    other drivers, a transaction): then messages go through Faust's ``Producer.send``."""
    producer = app.producer
    ensure = getattr(producer, "_ensure_producer", None)
    if ensure is None or getattr(producer, "_producer", None) is None:
        return None
    aio = ensure()
    if not hasattr(aio, "create_batch") or app.in_transaction:
        return None
    return aio


async def send_partition(
    aio: Any, topic: str, partition: int, messages: Iterable[tuple[bytes | None, bytes | None]]
) -> list[Sent]:
    """``messages`` (key, value) to one partition in as few record batches as fit.

    Pass a generator that encodes each message when it is asked for: orjson >= 3.12 gives each
    result a buffer of >= 4 KiB, whatever its length (ijl/orjson#483), and a replay batch
    stages thousands of changelog messages (5,000 events: ~11-12k before the dedupe bundles);
    encoding them all first held ~90 MB until the batch was built (docs/design.md, "Memory")."""
    sent: list[Sent] = []
    batch, n = aio.create_batch(), 0
    for key, value in messages:
        if batch.append(key=key, value=value, timestamp=None) is None:
            if n:
                sent.append((await aio.send_batch(batch, topic, partition=partition), n))
            batch, n = aio.create_batch(), 0
            if batch.append(key=key, value=value, timestamp=None) is None:
                # larger than a whole batch: the producer's own path splits nothing either,
                # but it takes up to max_request_size
                sent.append((await aio.send(topic, value, key=key, partition=partition), 1))
                continue
        n += 1
    if n:
        sent.append((await aio.send_batch(batch, topic, partition=partition), n))
    return sent


async def send_each(
    app: Any,
    topic: str,
    messages: Iterable[tuple[bytes, Any, int | None]],
    encode: Callable[[Any], bytes],
) -> None:
    """Send ``(key, value, partition or None)`` to ``topic`` through Faust's
    ``Producer.send``, which aiokafka appends to its open batch of the partition; a keyed
    message without a partition gets aiokafka's partition of its key, computed once per key.

    Not as record batches of their own (:func:`send_partition`): tried 2026-12-07 for the
    partials, follow-ups and score records, it made the bench slower (three interleaved pairs:
    ~25k against ~30k ev/s). ``send_batch`` waits until the partition's previous batch was
    drained, which a batch still within its linger time is not, so each commit waited for it;
    ``send`` appends to that batch instead."""
    producer = app.producer
    aio: Any = batch_producer(app)
    known = aio._metadata.partitions_for_topic(topic) if aio is not None else None
    count = len(known) if known else 0  # 0: no metadata yet, the producer picks as usual
    cache = _PARTITIONS
    for key, value, partition in messages:
        if partition is None and count:
            hit = cache.get((topic, key))
            if hit is not None and hit[0] == count:
                partition = hit[1]
            else:
                partition = aio._partition(topic, None, None, None, key, None)
                if len(cache) >= PARTITIONS_MAX:
                    cache.clear()
                cache[(topic, key)] = (count, partition)
        await producer.send(topic, key, encode(value), partition, None, None)
