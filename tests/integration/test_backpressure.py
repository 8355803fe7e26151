"""A replay backlog fills the batch buffers: back-pressure takes partitions out of the fetch and
puts them back (``BatchBuffer.put`` / ``_release``) without crashing and without losing a
record. All input is there before the worker starts and the fold is ~20x slower than the
fetch, so the survey buffer passes its high-water mark (``max(2 x CX_BATCH_SIZE, Faust's
stream_buffer_maxsize 4096)``) within the first seconds. Until 2026-12-02 this crashed the
fold agents and the drain loop (Faust's TP type assertion)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.generate import generate
from streams.settings import Settings
from streams.topics import create_topics, topic_specs
from tests.integration import faults, harness
from tests.integration.faults import fresh_broker  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def test_a_backlog_is_folded_through_back_pressure(
    fresh_broker: EmbeddedBroker,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    s = Settings(broker=fresh_broker.url, app_id="cx-backlog", partitions=4, min_sample=5,
                 emit_interval=0.5, session_timeout=6.0, batch_within=0.1,
                 windows=("5m", "1h"), dimensions=("all", "segment"))  # fmt: skip
    asyncio.run(create_topics(fresh_broker.bootstrap, topic_specs(s)))
    start = int(time.time() * 1000) - 6 * 3_600_000
    msgs = list(generate(31, 30_000, start, rate_per_s=30_000 / 18_000, customers=500))
    ends = faults.input_ends(asyncio.run(harness.produce_tracked(fresh_broker.bootstrap, msgs)))
    w = faults.spawn(s, tmp_path, "w1", CX_BATCH_DELIVERY="1", CX_BATCH_SIZE="500")
    try:
        faults.wait_folded(fresh_broker, s, ends, w, "the backlog folded", 240)
        harness.wait_until(lambda: sum(harness.events_total([w]).values()) >= len(msgs), 30,
                           "every record counted", w.log_tail)  # fmt: skip
        time.sleep(1.0)
        counted = sum(harness.events_total([w]).values())
        problems = faults.log_problems(w)
        alive = w.alive()
    finally:
        w.stop()
    assert alive, "the worker exited"
    assert not problems, problems[:5]
    assert counted == len(msgs), f"counted {counted}, produced {len(msgs)}"
