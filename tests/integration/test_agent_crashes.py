"""An agent that crashes is counted, recovers exactly, and stops the worker when it keeps
crashing (streams/supervision.py).

The fault (``tests/integration/failing/sitecustomize.py``): stage 1's commit of survey answers
writes the batch's state to the changelog, waits for the broker's acks, then raises before the
seal, which is what the 2**20 dedupe bug of 2026-12-04 did on every restart.

- ``transient``: the first 2 commits fail. Faust restarts the agent, the records of the failed
  batches are read again (``LeanConsumer.redeliver_lost``), and the scores equal a clean run's
  on another broker; ``cx_agent_crashes_total{agent="fold-surveys"}`` is 2, every record is
  counted once, the worker keeps running, and SIGTERM then stops it cleanly (exit 0).
- ``persistent``: every commit fails. After ``max_agent_crashes`` (3) the worker stops like on
  SIGTERM and exits with status 3; a worker started after it (without the fault) ends with the
  clean run's scores.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker
from streams.generate import generate
from streams.settings import Settings
from streams.supervision import EXIT_AGENT_CRASHES
from streams.topics import SURVEY_RESPONSES, create_topics, topic_specs
from tests.integration import faults, harness
from tests.integration.faults import two_brokers  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

FAILING = Path(__file__).parent / "failing"
EVENTS = 1500
START_MS = int(time.time() * 1000) - 3 * 3_600_000


def _settings(broker: EmbeddedBroker, app_id: str) -> Settings:
    return Settings(broker=broker.url, app_id=app_id, partitions=4, min_sample=5,
                    emit_interval=0.3, session_timeout=6.0, batch_within=0.1,
                    windows=("5m", "1h"), dimensions=("all", "segment"))  # fmt: skip


def _failing_worker(s: Settings, tmp_path: Path, name: str, failures: int) -> harness.Worker:
    path = os.pathsep.join(p for p in (str(FAILING), os.environ.get("PYTHONPATH")) if p)
    return faults.spawn(s, tmp_path, name, PYTHONPATH=path,
                        CX_TEST_FAIL_COMMIT=f"{SURVEY_RESPONSES}:{failures}",
                        CX_MAX_AGENT_CRASHES="3", CX_AGENT_CRASH_WINDOW="300")  # fmt: skip


def _crashes(w: harness.Worker) -> float:
    samples = w.samples() or {}
    return samples.get(("cx_agent_crashes_total", (("agent", "fold-surveys"),)), 0.0)


def _setup(brokers: Any) -> tuple[Any, Any, Settings, Settings, list[Any]]:
    a, b = brokers
    clean_s, s = _settings(a, "cx-clean"), _settings(b, "cx-crash")
    asyncio.run(create_topics(a.bootstrap, topic_specs(clean_s)))
    asyncio.run(create_topics(b.bootstrap, topic_specs(s)))
    msgs = list(generate(71, EVENTS, START_MS, rate_per_s=EVENTS / 7200, customers=150))
    return a, b, clean_s, s, msgs


def test_transient_commit_failures_are_counted_and_recovered_exactly(
    two_brokers: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    a, b, clean_s, s, msgs = _setup(two_brokers)
    clean = faults.spawn(clean_s, tmp_path, "clean")
    w = _failing_worker(s, tmp_path, "w1", failures=2)
    try:
        clean_ends = faults.input_ends(asyncio.run(harness.produce_tracked(a.bootstrap, msgs)))
        ends = faults.input_ends(asyncio.run(harness.produce_tracked(b.bootstrap, msgs)))
        faults.wait_folded(b, s, ends, w, "faulty run")
        faults.wait_folded(a, clean_s, clean_ends, clean, "clean run")
        harness.wait_until(lambda: sum(harness.events_total([w]).values()) >= len(msgs), 30,
                           "every record counted", w.log_tail)  # fmt: skip
        got, want = faults.final_scores(b), faults.final_scores(a)
        crashes = _crashes(w)
        counted = sum(harness.events_total([w]).values())
        alive = w.alive()
    finally:
        clean.stop()
        w.stop()
    log = w.log_path.read_text(errors="replace")
    # before BatchBuffer.abandon, a stop after a crash waited for the crashed batch forever
    assert w.proc.returncode == 0, f"SIGTERM after the crashes: exit {w.proc.returncode}"
    assert "wait_empty" not in log
    assert log.count("TEST FAULT: commit of") == 2, "the fault was not injected twice"
    assert crashes == 2, crashes
    assert "agent fold-surveys crashed (2 time(s) in the last 300s" in log
    assert alive, "two crashes are below max_agent_crashes: the worker must keep running"
    assert "stopping the worker" not in log
    assert counted == len(msgs), f"counted {counted} of {len(msgs)} records"  # none twice
    faults.assert_same_scores(got, want)


def test_an_agent_that_keeps_crashing_stops_the_worker(
    two_brokers: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    a, b, clean_s, s, msgs = _setup(two_brokers)
    clean = faults.spawn(clean_s, tmp_path, "clean")
    w = _failing_worker(s, tmp_path, "w1", failures=1_000_000)
    w2 = None
    try:
        clean_ends = faults.input_ends(asyncio.run(harness.produce_tracked(a.bootstrap, msgs)))
        ends = faults.input_ends(asyncio.run(harness.produce_tracked(b.bootstrap, msgs)))
        seen: list[float] = []

        def exited() -> bool:
            if w.alive():
                seen.append(_crashes(w))
                return False
            return True

        harness.wait_until(exited, 120, "the worker to give up", w.log_tail)
        status = w.proc.returncode
        log = w.log_path.read_text(errors="replace")
        assert status == EXIT_AGENT_CRASHES, (status, w.log_tail())
        assert log.count("TEST FAULT: commit of") == 3
        assert "agent fold-surveys crashed 3 times within 300s" in log
        assert "stopping the worker (exit status 3)" in log
        assert max(seen, default=0) >= 1, "cx_agent_crashes_total never showed a crash"
        # its partitions were left, not abandoned: the next worker joins without waiting for
        # the session timeout, and ends exact
        w2 = faults.spawn(s, tmp_path, "w2")
        faults.wait_folded(b, s, ends, w2, "after the worker gave up")
        faults.wait_folded(a, clean_s, clean_ends, clean, "clean run")
        got, want = faults.final_scores(b), faults.final_scores(a)
    finally:
        clean.stop()
        w.stop()
        if w2 is not None:
            w2.stop()
    assert not faults.log_problems(w2), faults.log_problems(w2)[:10]
    faults.assert_same_scores(got, want)
