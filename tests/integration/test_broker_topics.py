"""The embedded broker, topic creation and the traffic producer against a real Tansu."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from streams import topics
from streams.broker import BrokerError, EmbeddedBroker
from streams.generate import Scenario, generate, produce, run_generator
from streams.settings import Settings
from streams.topics import TopicSpec, create_topics, topic_specs
from tests.conftest import CreateTopics, MakeSettings

pytestmark = pytest.mark.integration

START_MS = 1_795_000_000_000


def _renamed(specs: list[TopicSpec], prefix: str) -> list[TopicSpec]:
    """The same specs under fresh names: the cx.* topics are shared by the whole session."""
    return [dataclasses.replace(s, name=prefix + s.name) for s in specs]


async def _describe(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, dict]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        configs: dict[str, dict] = {}
        for response in await admin.describe_configs(resources):
            for _code, _msg, _type, name, entries in response.resources:
                configs[name] = {entry[0]: entry[1] for entry in entries}
        return partitions, configs
    finally:
        await admin.close()


async def _count_records(bootstrap: str, names: tuple[str, ...]) -> int:
    """Records in ``names``, by reading them: Tansu's ListOffsets(latest) is not the log end
    (it answers the base offset of the last batch + 1), so ``end_offsets`` cannot count."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    count = 0
    try:
        await consumer.start()
        await consumer.topics()  # a metadata refresh: a consumer without subscription has none
        tps = [
            TopicPartition(name, p)
            for name in names
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with asyncio.timeout(30):
            # The fetch high watermark is right; read until every partition has reached it.
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    count += len(records)
                behind = 0
                for tp in tps:
                    high = consumer.highwater(tp)
                    behind += high is None or await consumer.position(tp) < high
                if not behind:
                    return count
    finally:
        await consumer.stop()


async def test_broker_answers_metadata(broker: EmbeddedBroker) -> None:
    assert broker.running()
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [("127.0.0.1", broker.port)]


def test_second_broker_on_a_taken_port_fails(broker: EmbeddedBroker, tmp_path: Path) -> None:
    # Without the up-front check the readiness probe would be answered by the first broker.
    clash = EmbeddedBroker(broker.port, log_path=tmp_path / "clash.log", startup_timeout=10)
    with pytest.raises(BrokerError, match="already in use"):
        clash.start()
    assert not clash.running()


def test_stop_terminates_the_process(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "b.log") as extra:
        proc = extra.process
        assert proc is not None and proc.poll() is None
    assert proc.poll() is not None
    assert extra.process is None and extra.stop() is None


async def test_create_topics_creates_every_spec_with_its_configs(
    broker: EmbeddedBroker, make_settings: MakeSettings
) -> None:
    settings = make_settings(partitions=3)
    specs = _renamed(topic_specs(settings), f"{settings.app_id}.")
    names = [s.name for s in specs]

    assert sorted(await create_topics(broker.bootstrap, specs)) == sorted(names)
    assert await create_topics(broker.bootstrap, specs) == []  # idempotent

    partitions, configs = await _describe(broker.bootstrap, names)
    assert partitions == dict.fromkeys(names, 3)
    assert configs == {s.name: s.configs for s in specs}


def test_topic_specs_cover_the_contract() -> None:
    settings = Settings(app_id="cx-pulse", partitions=6)
    specs = {s.name: s for s in topic_specs(settings)}
    assert set(topics.INPUTS) | set(topics.OUTPUTS) <= set(specs)
    assert "cx-pulse-partials" in specs
    for table in ("fold-surveys", "fold-support", "fold-cancellations", "fold-customers", "merge"):
        assert specs[f"cx-pulse-{table}-changelog"].compacted
    assert {s.partitions for s in specs.values()} == {6}
    assert specs[topics.CUSTOMERS].compacted and specs[topics.SCORES].compacted
    assert specs[topics.DEAD_LETTER].configs == {
        "cleanup.policy": "delete",
        "retention.ms": str(30 * 86_400_000),
        # a dead letter carries a 1 MB input in base64: more than Kafka's default 1 MB
        "max.message.bytes": str(4 * 1024 * 1024),
    }
    assert int(specs[topics.SURVEY_RESPONSES].configs["retention.ms"]) > 30 * 86_400_000
    assert specs["cx-pulse-partials"].configs["retention.ms"] == str(7 * 86_400_000)
    with pytest.raises(ValueError, match="cleanup.policy"):
        TopicSpec("x", 1, 1, {"cleanup.policy": "bogus", "retention.ms": "1"})


async def test_produced_messages_come_back_per_topic(
    broker: EmbeddedBroker, make_settings: MakeSettings
) -> None:
    settings = make_settings()
    prefix = f"{settings.app_id}."
    inputs = [s for s in topic_specs(settings) if s.name in topics.INPUTS]
    await create_topics(broker.bootstrap, _renamed(inputs, prefix))
    messages = [(prefix + t, k, v) for t, k, v in generate(3, 3000, START_MS, customers=150)]
    expected = Counter(t for t, _, _ in messages)
    assert len(expected) == 4

    assert await produce(broker.bootstrap, messages) == len(messages)

    got: Counter[str] = Counter()
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    consumer = AIOKafkaConsumer(
        *expected,
        bootstrap_servers=broker.bootstrap,
        group_id=f"{settings.app_id}-check",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    try:
        await consumer.start()
        async with asyncio.timeout(60):
            while got.total() < len(messages):
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    got[tp.topic] += len(records)
                    for record in records:
                        assert record.key is not None
                        partitions_of_key[record.key].add(tp.partition)
    finally:
        await consumer.stop()
    assert got == expected
    # Keyed by customer_id: one customer's events stay on one partition (default partitioner).
    assert all(len(parts) == 1 for parts in partitions_of_key.values())


async def test_produce_paces_at_the_requested_rate(
    broker: EmbeddedBroker, make_settings: MakeSettings
) -> None:
    name = f"{make_settings().app_id}.paced"
    spec = TopicSpec(name, 1, 1, {"cleanup.policy": "delete", "retention.ms": "3600000"})
    await create_topics(broker.bootstrap, [spec])
    started = time.monotonic()
    sent = await produce(broker.bootstrap, [(name, b"k", b"{}")] * 41, rate_per_s=100.0)
    assert sent == 41
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize("realtime", [False, True])
async def test_run_generator_fills_the_input_topics(
    broker: EmbeddedBroker,
    make_settings: MakeSettings,
    create_all_topics: CreateTopics,
    realtime: bool,
) -> None:
    settings = make_settings()
    scenario = Scenario("test", seed=11, customers=40, history_s=0, spike_segment="enterprise")
    await create_all_topics(settings)  # so that "before" has partitions to look at
    before = await _count_records(broker.bootstrap, topics.INPUTS)
    started = time.monotonic()

    sent = await run_generator(settings, scenario, 300, 200.0, realtime)

    elapsed = time.monotonic() - started
    after = await _count_records(broker.bootstrap, topics.INPUTS)
    assert sent == 340
    assert after - before == sent
    # Live mode follows the wall clock: 300 events at ~200/s take ~1.5 s; batch mode is fast.
    assert (elapsed > 1.0) if realtime else (elapsed < 1.0)
