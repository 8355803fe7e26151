"""SPEC §8 under failure: SIGKILL at random moments, a worker joining and leaving. The final
latest ``cx.scores`` records must equal those of a clean single-worker run over the same input.

Sizes are small here so ``make test`` stays quick; ``make chaos`` runs the full size
(``CX_CHAOS_EVENTS`` / ``CX_CHAOS_KILLS``).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker
from streams.generate import generate
from streams.settings import Settings
from streams.topics import INPUTS, create_topics, topic_specs
from tests.integration import faults, harness

pytestmark = pytest.mark.integration

EVENTS = int(os.environ.get("CX_CHAOS_EVENTS", "15000"))
KILLS = int(os.environ.get("CX_CHAOS_KILLS", "4"))
WAIT_S = max(300.0, EVENTS / 150)  # the worker folds ~700 events/s here, less under load
START_MS = int(time.time() * 1000) - 3 * 86_400_000  # fixed for the whole session


def _messages() -> list[tuple[str, bytes, bytes | None]]:
    msgs: list[tuple[str, bytes, bytes | None]] = list(
        generate(21, EVENTS, START_MS, rate_per_s=EVENTS / (2.5 * 86_400), customers=800)
    )
    rng = random.Random(5)
    msgs += rng.sample(msgs, len(msgs) // 50)  # 2% redelivered duplicates
    msgs.append(("cx.survey-responses", b"c-bad", b"{not json"))
    return msgs


def _settings(broker: EmbeddedBroker, app_id: str) -> Settings:
    return Settings(broker=broker.url, app_id=app_id, partitions=4, min_sample=5,
                    emit_interval=0.3, session_timeout=6.0, batch_within=0.1,
                    dimensions=("all", "segment", "channel"))  # fmt: skip


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, EmbeddedBroker]]:
    with (
        EmbeddedBroker(log_path=tmp_path / "a.log") as a,
        EmbeddedBroker(log_path=tmp_path / "b.log") as b,
    ):
        yield a, b


def _setup(broker: EmbeddedBroker, app_id: str) -> tuple[Settings, dict[tuple[str, int], int]]:
    settings = _settings(broker, app_id)
    asyncio.run(create_topics(broker.bootstrap, topic_specs(settings)))
    ends = asyncio.run(harness.produce_tracked(broker.bootstrap, _messages()))
    return settings, {tp: o for tp, o in ends.items() if tp[0] in INPUTS}


def _clean_run(broker: EmbeddedBroker, tmp_path: Path) -> dict[str, Any]:
    settings, ends = _setup(broker, "cx-clean")
    w = harness.Worker(settings, tmp_path, "clean")
    try:
        faults.wait_settled(broker, settings, ends, w, "clean run", WAIT_S)
        scores = faults.final_scores(broker)
    finally:
        w.stop()
    assert len(scores) > 500
    return scores


def _keep_for_post_mortem(a: dict[str, Any], b: dict[str, Any], tmp_path: Path) -> None:
    """Writes both score sets to ``CX_CHAOS_DUMP``; on a difference also keeps the workers' and
    brokers' logs of the run (pytest keeps only its last few tmp dirs) next to it."""
    import json
    import shutil

    dump = Path(os.environ.get("CX_CHAOS_DUMP", "/tmp/cx-chaos-diff.json"))
    dump.write_text(json.dumps({"got": a, "clean": b}, sort_keys=True))
    if faults.without_as_of(a) != faults.without_as_of(b):
        keep = dump.with_name(f"cx-chaos-fail-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copytree(tmp_path, keep, ignore=shutil.ignore_patterns("*-data"))


def test_sigkill_at_random_moments_gives_clean_run_scores(brokers: Any, tmp_path: Path) -> None:
    clean_broker, chaos_broker = brokers
    clean = _clean_run(clean_broker, tmp_path)
    settings, ends = _setup(chaos_broker, "cx-chaos")
    rng = random.Random(99)
    kills = 0
    worker = harness.Worker(settings, tmp_path, "chaos-0")
    try:
        while kills < KILLS:
            time.sleep(rng.uniform(1.0, 6.0))
            worker.stop(signal.SIGKILL)
            kills += 1
            worker = harness.Worker(settings, tmp_path, f"chaos-{kills}")
        faults.wait_settled(chaos_broker, settings, ends, worker, "chaos run", WAIT_S)
        scores = faults.final_scores(chaos_broker)
    finally:
        worker.stop()
    assert kills >= 1
    _keep_for_post_mortem(scores, clean, tmp_path)
    faults.assert_same_scores(scores, clean)


def test_worker_joining_and_leaving_gives_clean_run_scores(brokers: Any, tmp_path: Path) -> None:
    clean_broker, other_broker = brokers
    clean = _clean_run(clean_broker, tmp_path)
    settings, ends = _setup(other_broker, "cx-scale")
    first = harness.Worker(settings, tmp_path, "scale-1")
    second = None
    try:
        time.sleep(3)
        second = harness.Worker(settings, tmp_path, "scale-2")  # joins: rebalance
        time.sleep(8)
        second.stop()  # leaves gracefully (SIGTERM): another rebalance
        faults.wait_settled(other_broker, settings, ends, first, "scale run", WAIT_S)
        scores = faults.final_scores(other_broker)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    _keep_for_post_mortem(scores, clean, tmp_path)
    faults.assert_same_scores(scores, clean)
