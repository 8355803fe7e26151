"""Sends (streams/producing.py): changelog writes as record batches, the other messages one by
one with the partition aiokafka's ``send`` would pick, computed once per key."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from streams import codecs
from streams.producing import send_each, send_partition


class _Client:
    def __init__(self) -> None:
        self.waited: list[str] = []

    async def _wait_on_metadata(self, topic: str) -> None:
        self.waited.append(topic)


class _Aio:
    """create_batch/send_batch/_partition/send as aiokafka's producer has them."""

    def __init__(self, batch_size: int = 16384, partitions: int = 4) -> None:
        self.client = _Client()
        self.partitions = list(range(partitions))
        self._metadata = self
        self.partitioned = 0
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []
        self.partitioner = DefaultPartitioner()

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0, is_transactional=False)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        buf = batch._builder.build()
        records = [(r.key, r.value) for r in DefaultRecordBatch(bytes(buf))]
        self.sent.append((topic, partition, records))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(len(records))
        return fut

    async def send(self, topic: str, value: bytes, *, key: bytes, partition: int) -> Any:
        self.sent.append((topic, partition, [(key, value)]))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(1)
        return fut

    def _partition(self, topic: str, partition: Any, key: Any, value: Any,
                   serialized_key: bytes, serialized_value: Any) -> int:  # fmt: skip
        assert partition is None
        self.partitioned += 1
        return int(self.partitioner(serialized_key, self.partitions, self.partitions))

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions)


class _Producer:
    """Faust's producer: ``send`` recorded, the aiokafka producer behind it."""

    def __init__(self, aio: _Aio) -> None:
        self._producer = aio
        self.sent: list[tuple[Any, ...]] = []

    def _ensure_producer(self) -> _Aio:
        return self._producer

    async def send(self, *args: Any) -> None:
        self.sent.append(args)


class _App:
    in_transaction = False

    def __init__(self, aio: _Aio) -> None:
        self.producer = _Producer(aio)


def test_the_aiokafka_calls_relied_on_are_there() -> None:
    source = inspect.getsource(AIOKafkaProducer._partition)
    assert "all_partitions = list(self._metadata.partitions_for_topic(topic))" in source
    assert list(inspect.signature(AIOKafkaProducer._partition).parameters) == [
        "self", "topic", "partition", "key", "value", "serialized_key", "serialized_value",
    ]  # fmt: skip
    assert "partition" in inspect.signature(AIOKafkaProducer.send_batch).parameters
    assert callable(AIOKafkaProducer.create_batch)
    source = inspect.getsource(AIOKafkaProducer._partition)
    assert "self._partitioner(serialized_key, all_partitions, available)" in source


async def test_keyed_messages_go_where_send_puts_them_in_order() -> None:
    aio = _Aio()
    app = _App(aio)
    records = [(f"nps|5m|segment=s{i % 7}".encode(), {"i": i}, None) for i in range(40)]
    records += [(b"#wm", {"wm": 1}, 3), (b"#wm", {"wm": 2}, 0)]
    await send_each(app, "cx.scores", iter(records), codecs.dumps)
    want = [
        ("cx.scores", key, codecs.dumps(value),
         p if p is not None else aio.partitioner(key, [0, 1, 2, 3], [0, 1, 2, 3]), None, None)
        for key, value, p in records
    ]  # fmt: skip
    assert app.producer.sent == want  # in order, each where aiokafka's partitioner puts it
    assert len({m[3] for m in want}) > 1
    assert aio.partitioned == 7  # each key's partition computed once (cached)
    aio.partitions = list(range(6))  # more partitions: the keys move as the partitioner says
    app.producer.sent.clear()
    await send_each(app, "cx.scores", iter(records[:7]), codecs.dumps)
    assert aio.partitioned == 14
    assert [m[3] for m in app.producer.sent] == [
        aio.partitioner(k, aio.partitions, aio.partitions) for k, _v, _p in records[:7]
    ]
    aio.partitions = []  # no metadata yet: the producer picks, as it would
    app.producer.sent.clear()
    await send_each(app, "cx.other", iter(records[:2]), codecs.dumps)
    assert [m[3] for m in app.producer.sent] == [None, None]


async def test_a_partition_takes_as_many_batches_as_fit() -> None:
    aio = _Aio(batch_size=1024)
    big = b"x" * 3000  # larger than a whole batch: sent on its own
    messages = [(f"k{i}".encode(), b"v" * 100) for i in range(30)] + [(b"big", big), (b"z", b"1")]
    sent = await send_partition(aio, "t", 2, iter(messages))
    assert [n for _fut, n in sent] == [len(b) for _t, _p, b in aio.sent]
    assert sum(n for _fut, n in sent) == len(messages) and len(sent) > 3
    assert [m for _t, _p, b in aio.sent for m in b] == messages
    assert all(p == 2 for _t, p, _b in aio.sent)


async def test_without_a_batch_producer_the_producer_picks() -> None:
    class _FaustProducer:
        def __init__(self) -> None:
            self.sent: list[tuple[Any, ...]] = []

        async def send(self, *args: Any) -> None:
            self.sent.append(args)

    class _TestApp:  # agent.test_context(): no aiokafka producer behind Faust's
        producer = _FaustProducer()
        in_transaction = False

    app = _TestApp()
    await send_each(app, "t", [(b"k", {"a": 1}, None), (b"j", {"b": 2}, 1)], codecs.dumps)
    assert app.producer.sent == [
        ("t", b"k", b'{"a":1}', None, None, None), ("t", b"j", b'{"b":2}', 1, None, None),
    ]  # fmt: skip
