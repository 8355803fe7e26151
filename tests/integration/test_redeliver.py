"""Records the consumer took but never delivered are read again (batch delivery).

A worker with batch delivery sometimes stalled after its first assignment: aiokafka's position
at the end of some input partitions, Faust's read offset still at the committed offset, the
records in between never handed to the fold (``LeanConsumer.redeliver_lost``). The fault is
injected here with ``tests/integration/lossy/sitecustomize.py``: the first fetch of survey
answers vanishes between aiokafka and Faust. All input is produced before the worker starts,
so no later record of those partitions arrives to heal the hole through the gap check
(streams/agents/gaps.py); without the redelivery the worker never folds them.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.generate import generate
from streams.settings import Settings
from streams.topics import SURVEY_RESPONSES, create_topics, topic_specs
from tests.integration import faults, harness
from tests.integration.faults import fresh_broker  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

LOSSY = Path(__file__).parent / "lossy"


def _lossy_worker(s: Settings, tmp_path: Path, name: str) -> harness.Worker:
    path = os.pathsep.join(p for p in (str(LOSSY), os.environ.get("PYTHONPATH")) if p)
    return faults.spawn(s, tmp_path, name, CX_BATCH_DELIVERY="1",
                        CX_TEST_LOSE_FETCH=SURVEY_RESPONSES, PYTHONPATH=path)  # fmt: skip


def _check(w: harness.Worker, expected: int, *, redelivered: bool) -> None:
    """``w`` folded and counted exactly ``expected`` records after losing a fetch."""
    harness.wait_until(lambda: sum(harness.events_total([w]).values()) >= expected, 30,
                       "every record counted", w.log_tail)  # fmt: skip
    time.sleep(1.0)
    counted = sum(harness.events_total([w]).values())
    log = w.log_path.read_text(errors="replace")
    lost = re.search(r"TEST FAULT: lost (\{.*\}) records", log)
    assert lost, "the fault was not injected (no fetch of survey answers?)"
    assert sum(int(n) for n in re.findall(r": (\d+)", lost.group(1))) > 0
    if redelivered:
        assert "were consumed but never folded; reading them again" in log
    assert counted == expected, f"counted {counted}, want {expected}"  # none twice
    assert not faults.log_problems(w)


@pytest.mark.parametrize("committed", [False, True], ids=["fresh-group", "after-commits"])
def test_records_consumed_but_never_delivered_are_read_again(
    fresh_broker: EmbeddedBroker,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    committed: bool,
) -> None:
    """``fresh-group``: nothing committed yet, the lost range starts at the log start; only
    the redelivery can bring it back. ``after-commits``: a first worker folded and committed
    half of the input and left, the next one loses its first fetch from the committed offsets
    (the stall that was seen). There the fetch can also come before Faust's seek to the
    committed offsets at the end of its recovery, which reads the range again by itself, and
    a range handed over just before that seek is read a second time by the redelivery: the
    counts must be exact either way."""
    s = Settings(broker=fresh_broker.url, app_id="cx-lossy", partitions=4, min_sample=5,
                 emit_interval=0.3, session_timeout=6.0, batch_within=0.1,
                 windows=("5m", "1h"), dimensions=("all", "segment"))  # fmt: skip
    asyncio.run(create_topics(fresh_broker.bootstrap, topic_specs(s)))
    start = int(time.time() * 1000) - 3_600_000
    msgs = list(generate(29, 600, start, rate_per_s=600 / 3000, customers=100))
    cut = len(msgs) // 2 if committed else 0
    w1 = None
    try:
        if committed:
            w1 = faults.spawn(s, tmp_path, "w1")
            ends1 = faults.input_ends(
                asyncio.run(harness.produce_tracked(fresh_broker.bootstrap, msgs[:cut]))
            )
            faults.wait_caught_up(fresh_broker, s, ends1, w1, "w1 committed phase 1", 90)
            w1.stop()
        ends = faults.input_ends(
            asyncio.run(harness.produce_tracked(fresh_broker.bootstrap, msgs[cut:]))
        )
        w = _lossy_worker(s, tmp_path, "w2")
        try:
            faults.wait_folded(fresh_broker, s, ends, w, "every record folded", 90)
            _check(w, len(msgs) - cut, redelivered=not committed)
        finally:
            w.stop()
    finally:
        if w1 is not None:
            w1.stop()
