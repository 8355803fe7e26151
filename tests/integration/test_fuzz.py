"""SPEC §8 "malformed input never stops a worker", live: adversarial payloads (wrong types, huge
strings, 10,000-deep nesting, invalid UTF-8, NaN/Infinity, 1 MB messages, unknown fields,
tombstones, non-UTF-8 keys) interleaved with valid events on all four input topics.

The payloads come from :mod:`tests.fuzzgen` with a seeded ``random.Random`` (hypothesis'
``.example()`` warns under pytest; the hypothesis property over the same generators, without a
broker, is ``tests/unit/test_fold_fuzz.py``). ``CX_FUZZ_SEED`` / ``CX_FUZZ_ITEMS`` change the run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.settings import Settings
from streams.topics import create_topics, topic_specs
from tests import fuzzgen
from tests.integration import faults, harness
from tests.integration.faults import fresh_broker  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("CX_FUZZ_SEED", "20261124"))
ITEMS = int(os.environ.get("CX_FUZZ_ITEMS", "1500"))


def test_malformed_input_is_dead_lettered_and_never_stops_the_worker(
    fresh_broker: EmbeddedBroker,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = Settings(broker=fresh_broker.url, app_id="cx-fuzz", partitions=4, min_sample=5,
                        windows=("5m", "1h", "24h"), dimensions=("all", "segment", "channel"),
                        emit_interval=0.3, session_timeout=6.0, batch_within=0.1)  # fmt: skip
    asyncio.run(create_topics(fresh_broker.bootstrap, topic_specs(settings)))
    items = fuzzgen.items(SEED, ITEMS, int(time.time() * 1000))
    worker = faults.spawn(settings, tmp_path, "fuzz")
    try:
        faults.wait_up(worker)
        pid = worker.proc.pid
        asyncio.run(faults.produce_big(fresh_broker.bootstrap,
                                       [(it.topic, it.key, it.value) for it in items]))  # fmt: skip

        def fail() -> str:
            return f"{harness.events_total([worker])}\n{worker.log_tail(60)}"

        harness.wait_until(lambda: sum(harness.events_total([worker]).values()) >= len(items),
                           90, "every record counted", fail)  # fmt: skip
        time.sleep(1.0)  # anything counted twice would show now
        totals = harness.events_total([worker])
        dead = asyncio.run(faults.read_raw(fresh_broker.bootstrap, "cx.dead-letter"))
        assert worker.alive() and worker.proc.pid == pid, fail()
    finally:
        worker.stop()
    problems = faults.log_problems(worker)
    assert not problems, "\n".join(problems[:20])

    malformed = Counter(it.topic for it in items if not it.valid)
    valid = Counter(it.topic for it in items if it.valid)
    records = [faults.loads(v) for _k, v in dead]
    by_topic = Counter(r["topic"] for r in records)
    reasons = Counter(r["reason"] for r in records)
    kinds = Counter(it.kind.split(":")[0] for it in items if not it.valid)
    print(f"\nfuzz: {len(items)} records, {sum(malformed.values())} malformed {dict(kinds)}, "
          f"dead-letter reasons {dict(reasons)}")  # fmt: skip
    assert by_topic == malformed
    assert all(r["reason"] and r["detail"] for r in records)
    for topic in fuzzgen.TOPICS:
        applied = totals.get((topic, "applied"), 0) + totals.get((topic, "late"), 0)
        assert applied == valid[topic], (topic, totals)
        assert totals.get((topic, "dead_letter"), 0) == malformed[topic], (topic, totals)
        assert totals.get((topic, "duplicate"), 0) == 0, (topic, totals)
    assert kinds["too_large"] > 0 and kinds["deep"] > 0 and kinds["tombstone"] > 0
