"""Graceful shutdown: SIGTERM flushes, commits and leaves the consumer group, so the next
worker of the group is assigned at once instead of waiting out the session timeout.

The session timeout is long (30 s) to make the difference visible. On Tansu every join waits
half the session timeout (measured: 3 s at 6 s, 15 s at 30 s) even into an empty group, so
"at once" means about 15 s here; a member that died without leaving adds the full 30 s plus a
second join round (measured 63 s before the fix).

Faust's SIGTERM path (``App._stop_consumer``): stop the fetcher, wait until every event taken
by an agent is acked, commit, flush the producer, then stop the aiokafka consumer, whose
coordinator sends LeaveGroup. aiokafka sends it only when ``generation > 0``
(``GroupCoordinator._maybe_leave_group``); Tansu numbers a group's first generation 0, so
without the fix in ``streams/cli.py`` the first worker of a fresh group never leaves.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker
from streams.generate import generate
from streams.settings import Settings
from streams.topics import create_topics, topic_specs
from tests.integration import faults, harness
from tests.integration.faults import two_brokers  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

SESSION_S = 30.0
EVENTS = 2500
START_MS = int(time.time() * 1000) - 2 * 86_400_000


def _settings(broker: EmbeddedBroker, app_id: str, session: float) -> Settings:
    return Settings(broker=broker.url, app_id=app_id, partitions=4, min_sample=5,
                    emit_interval=0.3, session_timeout=session, batch_within=0.1,
                    windows=("5m", "1h", "24h"), dimensions=("all", "segment"))  # fmt: skip


def _first_line_at(worker: harness.Worker, text: str) -> bool:
    return text in worker.log_path.read_text(errors="replace")


def test_sigterm_commits_and_leaves_so_the_next_worker_joins_at_once(
    two_brokers: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    a, b = two_brokers
    clean_s = _settings(a, "cx-clean", 6.0)
    s = _settings(b, "cx-term", SESSION_S)
    asyncio.run(create_topics(a.bootstrap, topic_specs(clean_s)))
    asyncio.run(create_topics(b.bootstrap, topic_specs(s)))
    msgs = list(generate(41, EVENTS, START_MS, rate_per_s=EVENTS / 86_400, customers=300))
    cut = len(msgs) * 2 // 3
    clean = faults.spawn(clean_s, tmp_path, "clean")
    w1 = faults.spawn(s, tmp_path, "w1")
    w2 = None
    try:
        clean_ends = faults.input_ends(asyncio.run(harness.produce_tracked(a.bootstrap, msgs)))
        ends1 = faults.input_ends(asyncio.run(harness.produce_tracked(b.bootstrap, msgs[:cut])))
        # SIGTERM while w1 is still folding phase 1 (its first join takes ~15 s)
        harness.wait_until(lambda: sum(harness.events_total([w1]).values()) >= cut // 3, 90,
                           "w1 folding", w1.log_tail)  # fmt: skip
        t0 = time.monotonic()
        w1.proc.send_signal(signal.SIGTERM)
        rc = w1.proc.wait(timeout=60)
        exit_s = time.monotonic() - t0
        w1.stop()
        left = _first_line_at(w1, "LeaveGroup request succeeded")
        committed = asyncio.run(harness.committed(b.bootstrap, s.app_id, ends1))
        sealed = faults.sealed(b, s)  # what w1 folded (its stage-1 seals)
        uncommitted = {tp: (committed.get(tp), sealed.get(tp)) for tp in ends1
                       if committed.get(tp, 0) != sealed.get(tp, 0)}  # fmt: skip
        remaining = sum(ends1[tp] - sealed.get(tp, 0) for tp in ends1)

        t1 = time.monotonic()
        w2 = faults.spawn(s, tmp_path, "w2")
        ends = faults.merge_ends(ends1, faults.input_ends(
            asyncio.run(harness.produce_tracked(b.bootstrap, msgs[cut:]))))  # fmt: skip
        expected = remaining + len(msgs) - cut
        harness.wait_until(lambda: _first_line_at(w2, "Setting newly assigned partitions"), 90,
                           "w2 assigned", w2.log_tail)  # fmt: skip
        assigned_s = time.monotonic() - t1
        # "new input": as many records as phase 2 has (w2 folds the uncommitted rest first)
        harness.wait_until(lambda: sum(harness.events_total([w2]).values()) >= len(msgs) - cut,
                           90, "w2 folding", w2.log_tail)  # fmt: skip
        processed_s = time.monotonic() - t1
        faults.wait_folded(b, s, ends, w2, "w2 folded everything", 90)
        faults.wait_folded(a, clean_s, clean_ends, clean, "clean run", 90)
        time.sleep(1.0)
        w2_total = sum(harness.events_total([w2]).values())
        got, want = faults.final_scores(b), faults.final_scores(a)
    finally:
        clean.stop()
        w1.stop()
        if w2 is not None:
            w2.stop()
    print(f"\nshutdown: SIGTERM exit {exit_s:.1f} s rc={rc} left={left}; {remaining} of "
          f"{cut} phase-1 records left unfolded at exit; next worker assigned after "
          f"{assigned_s:.1f} s, folded new input after {processed_s:.1f} s "
          f"(session timeout {SESSION_S:.0f} s); w2 counted {w2_total:.0f} of {expected}")  # fmt: skip
    problems = []
    if rc != 0 or exit_s >= 15:
        problems.append(f"exit code {rc} after {exit_s:.1f} s (want 0 within 15 s)")
    problems += faults.log_problems(w1)[:10]
    if uncommitted:  # (committed, sealed) per partition: folded but not committed
        problems.append(f"SIGTERM did not commit everything folded: {uncommitted}")
    if not left:
        problems.append("no LeaveGroup on SIGTERM (Tansu's generation 0, see the docstring)")
    if w2_total != expected:  # w2 folds exactly what w1 did not: none lost, none twice
        problems.append(f"w2 counted {w2_total:.0f} records, want {expected}")
    if assigned_s >= 0.75 * SESSION_S:
        problems.append(f"w2 assigned after {assigned_s:.1f} s: waited out the session timeout")
    if processed_s >= 1.5 * SESSION_S:  # with a session-timeout wait it is >= 45 s
        problems.append(f"w2 folded new input after {processed_s:.1f} s")
    try:
        faults.assert_same_scores(got, want)
    except AssertionError as exc:
        problems.append(f"final scores differ from a clean run: {exc}")
    assert not problems, "\n".join(problems)
