"""``streams.agents.gaps.InputLog`` reads offset ranges straight from a real broker."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from streams.agents.gaps import InputLog
from streams.broker import EmbeddedBroker
from streams.topics import TopicSpec, create_topics

pytestmark = pytest.mark.integration


async def test_input_log_reads_exactly_the_range(broker: EmbeddedBroker) -> None:
    topic = "gaps-test-input"
    configs = {"cleanup.policy": "delete", "retention.ms": "-1"}
    await create_topics(broker.bootstrap, [TopicSpec(topic, 2, 1, configs)])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i in range(30):  # several batches: the range starts and ends inside them
            await producer.send_and_wait(topic, f"v{i}".encode(), key=b"k", partition=1)
    finally:
        await producer.stop()
    log = InputLog(broker.bootstrap, topic)
    try:
        middle = await log.read(1, 7, 19)
        assert [(r.partition, r.offset, r.raw) for r in middle] == [
            (1, o, f"v{o}".encode()) for o in range(7, 20)
        ]
        assert all(r.key == b"k" and r.timestamp_ms > 1_700_000_000_000 for r in middle)
        assert [r.offset for r in await log.read(1, 29, 29)] == [29]  # the last record
        assert [r.offset for r in await log.read(1, 0, 2)] == [0, 1, 2]  # reused consumer
    finally:
        await log.stop()
