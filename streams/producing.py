"""Messages handed to the producer as aiokafka record batches, a partition at a time.

Faust's ``Producer.send`` -> aiokafka's ``send`` costs ~10-15 us per message (metadata wait,
serializers, partitioner, a future, the accumulator's bookkeeping), and the agents send
several messages per event between them: changelog writes (:mod:`streams.tables`), partials,
follow-ups and dead letters (stage 1), score records and alerts (stage 2). Here they are
appended to a ``BatchBuilder`` (aiokafka's ``create_batch``: the C record builder) and each
full batch goes out with ``send_batch``: one future per batch. Ordering per partition is the
same as message by message (batches of a partition are queued in order), and so is the
partition of a keyed message without one: aiokafka's partitioner of the key (murmur2), what
``send`` picks, so a compacted topic such as ``cx.scores`` keeps each key in one partition.

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
    stages ~11-12k changelog messages; encoding them all first held ~90 MB until the batch was
    built (docs/design.md, "Memory")."""
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


async def send_all(
    app: Any,
    topic: str,
    messages: Iterable[tuple[bytes, Any, int | None]],
    encode: Callable[[Any], bytes],
) -> None:
    """Send ``(key, value, partition or None)`` to ``topic``, each value encoded by
    ``encode`` right before its append; no partition: the producer's partitioner of the key."""
    aio = batch_producer(app)
    if aio is None:
        for key, value, partition in messages:
            await app.producer.send(topic, key, encode(value), partition, None, None)
        return
    by_partition: dict[int, list[tuple[bytes, Any]]] = {}
    count = -1
    cache = _PARTITIONS
    for key, value, partition in messages:
        if count < 0:  # the partitioner reads the topic's metadata
            await aio.client._wait_on_metadata(topic)
            count = len(aio._metadata.partitions_for_topic(topic))
        if partition is None:
            hit = cache.get((topic, key))
            if hit is not None and hit[0] == count:
                partition = hit[1]
            else:
                partition = aio._partition(topic, None, None, None, key, None)
                if len(cache) >= PARTITIONS_MAX:
                    cache.clear()
                cache[(topic, key)] = (count, partition)
        rows = by_partition.get(partition)
        if rows is None:
            by_partition[partition] = [(key, value)]
        else:
            rows.append((key, value))
    for partition, rows in by_partition.items():
        await send_partition(aio, topic, partition, ((k, encode(v)) for k, v in rows))
