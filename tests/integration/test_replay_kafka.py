"""``cxpulse replay`` against a real Tansu: the Olist reviews go in and come back out whole.

Own broker: the ``cx.*`` topic names are fixed, and the session broker's ``cx.survey-responses``
holds other tests' messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams import topics
from streams.broker import EmbeddedBroker
from streams.replay import replay
from streams.settings import Settings
from streams.topics import create_topics, topic_specs

pytestmark = pytest.mark.integration

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
OLIST = DATASETS / "olist_classified_reviews.csv.gz"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


async def read_until_idle(
    bootstrap: str, topic: str, idle_s: float = 3.0
) -> list[tuple[bytes, dict]]:
    """Every record of ``topic``, read until nothing arrives for ``idle_s``. Not end_offsets():
    Tansu answers the base offset of the last batch + 1 there, short of the real end."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    out: list[tuple[bytes, dict]] = []
    try:
        await consumer.start()
        async with asyncio.timeout(120):
            while batch := await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=5000):
                for records in batch.values():
                    out.extend((r.key, orjson.loads(r.value)) for r in records)
        return out
    finally:
        await consumer.stop()


@pytest.mark.skipif(not OLIST.exists(), reason=f"dataset not found: {OLIST}")
async def test_replay_olist_round_trip(own_broker: EmbeddedBroker) -> None:
    settings = Settings(broker=own_broker.url, partitions=4)
    await create_topics(own_broker.bootstrap, topic_specs(settings))
    stats = await replay(settings, "olist", OLIST, progress=False, time_shift="now")
    assert stats.events == stats.rows == 3584 and not stats.skipped

    records = await read_until_idle(own_broker.bootstrap, topics.SURVEY_RESPONSES)
    assert len(records) == stats.events
    assert all(key == value["customer_id"].encode() for key, value in records)
    assert len({value["response_id"] for _key, value in records}) == stats.events
    assert {value["survey"] for _key, value in records} == {"csat"}
