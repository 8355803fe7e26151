"""Redelivered events (same id, same key, same bytes, new offset) count once, also across
SIGKILLs: the dedupe entry ``{p}|d|{id} = [offset of first occurrence, t]`` comes back from
the changelog, so a redelivery after a restart is still a ``duplicate``, while a replay of the
*same* offset (records after the last commit, refolded after a crash) is not.

10% of the survey, support and cancellation events are sent twice (customer records are
state, not events: a repeated one is an idempotent update, ``applied``). The final scores must
equal a clean run over the stream without the copies. A killed process's counters die with
it, so ``duplicate`` is checked exactly for the last process, which only sees phase 2.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker
from streams.generate import generate
from streams.settings import Settings
from streams.topics import CUSTOMERS, create_topics, topic_specs
from tests.integration import faults, harness
from tests.integration.faults import two_brokers  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

EVENTS = 3000
START_MS = int(time.time() * 1000) - 86_400_000

Msg = tuple[str, bytes, bytes | None]


def _settings(broker: EmbeddedBroker, app_id: str) -> Settings:
    return Settings(broker=broker.url, app_id=app_id, partitions=4, min_sample=5,
                    emit_interval=0.3, session_timeout=6.0, batch_within=0.1,
                    windows=("5m", "1h", "24h"), dimensions=("all", "segment", "channel"))  # fmt: skip


def _streams() -> tuple[list[Msg], list[Msg], list[Msg], int]:
    """(clean stream, phase 1, phase 2, copies in phase 2)."""
    # ~12 h of event time: a copy is never older than the 24 h retention (it would be too_old)
    msgs = list(generate(53, EVENTS, START_MS, rate_per_s=EVENTS / 43_200, customers=300))
    rng = random.Random(7)
    events = [i for i, m in enumerate(msgs) if m[0] != CUSTOMERS]
    copied = sorted(rng.sample(events, len(events) // 10))
    cut = len(msgs) // 2
    phase1, phase2 = list(msgs[:cut]), list(msgs[cut:])
    late = 0
    for i in copied:
        # a copy arrives a little later in its own phase, or (a third of the copies of phase-1
        # events) only in phase 2, after the restart
        if i < cut and rng.random() < 1 / 3:
            target, late = phase2, late + 1
        else:
            target = phase1 if i < cut else phase2
        lo = max(0, min(len(target), (i if target is phase1 else i - cut) + 1))
        target.insert(rng.randint(lo, min(len(target), lo + 200)), msgs[i])
    in_phase2 = sum(1 for i in copied if i >= cut) + late
    return msgs, phase1, phase2, in_phase2


def test_redelivered_events_count_once_across_sigkills(two_brokers: Any, tmp_path: Path) -> None:  # noqa: F811
    a, b = two_brokers
    clean_s, s = _settings(a, "cx-clean"), _settings(b, "cx-dups")
    asyncio.run(create_topics(a.bootstrap, topic_specs(clean_s)))
    asyncio.run(create_topics(b.bootstrap, topic_specs(s)))
    msgs, phase1, phase2, copies2 = _streams()
    clean = faults.spawn(clean_s, tmp_path, "clean")
    workers = [faults.spawn(s, tmp_path, "d0")]
    try:
        clean_ends = faults.input_ends(asyncio.run(harness.produce_tracked(a.bootstrap, msgs)))
        ends = faults.input_ends(asyncio.run(harness.produce_tracked(b.bootstrap, phase1)))
        # kill 1: at a random moment while phase 1 is being folded
        harness.wait_until(lambda: sum(harness.events_total(workers[-1:]).values()) > 300, 90,
                           "d0 folding", workers[-1].log_tail)  # fmt: skip
        time.sleep(random.Random(3).uniform(0.0, 1.5))
        workers[-1].stop(signal.SIGKILL)
        workers.append(faults.spawn(s, tmp_path, "d1"))
        faults.wait_folded(b, s, ends, workers[-1], "phase 1")
        # kill 2: after phase 1 is sealed, so the last process counts exactly phase 2 (phase-1
        # records re-read after the kill, if their commit had not happened yet, are skipped by
        # the seal and not counted)
        workers[-1].stop(signal.SIGKILL)
        workers.append(faults.spawn(s, tmp_path, "d2"))
        ends = faults.merge_ends(ends, faults.input_ends(
            asyncio.run(harness.produce_tracked(b.bootstrap, phase2))))  # fmt: skip
        faults.wait_folded(b, s, ends, workers[-1], "phase 2")
        faults.wait_folded(a, clean_s, clean_ends, clean, "clean run")
        time.sleep(1.0)
        last = harness.events_total(workers[-1:])
        got, want = faults.final_scores(b), faults.final_scores(a)
        assert workers[-1].alive(), workers[-1].log_tail()
    finally:
        clean.stop()
        for w in workers:
            w.stop()
    outcomes: dict[str, float] = {}
    for (_topic, outcome), v in last.items():
        outcomes[outcome] = outcomes.get(outcome, 0) + v
    print(f"\nduplicates: {len(phase1) + len(phase2) - len(msgs)} copies of {len(msgs)} records, "
          f"2 SIGKILLs; last process: {outcomes}")  # fmt: skip
    assert outcomes.get("duplicate", 0) == copies2, (outcomes, copies2)
    assert sum(outcomes.values()) == len(phase2)
    assert outcomes.get("dead_letter", 0) == 0
    for w in workers:
        assert not faults.log_problems(w), faults.log_problems(w)[:10]
    faults.assert_same_scores(got, want)
