"""SPEC §8 "state is bounded": a worker folding a long steady stream keeps a flat RSS once its
windows are full. Memory may grow with keys x buckets within retention, never with the number
of events, so the stream spans several retentions (windows 5m and 1h: retention 1 h, and the
stream covers ~5 h of event time): dedupe entries, buckets and ticket states must expire.

RSS is read from ``/proc/<pid>/status`` every second together with the events counted so far
(``cx_events_total``). The curve is printed (``pytest -s``) and written to ``rss.json`` in the
test's tmp dir. ``CX_MEMORY_EVENTS`` changes the stream length (default 600k, about two
minutes; ``make memory`` runs 2M).

The warm-up is longer than the windows' fill: the allocator's heap keeps settling after state
is steady. A 1M run (2026-12-03, malloc arenas capped: streams/cli.py) rose from ~185 MB at 60k
events to ~220 MB at ~170k and stayed within 215-230 MB (slope +0.15 MB per 10k) to the end,
with transient peaks of up to +100 MB for a second; the 300k default judged from 40k on, i.e.
mostly the settling, and failed about 1 run in 5 with a flat 1M curve.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.settings import Settings
from tests.integration import faults, harness
from tests.integration.faults import fresh_broker  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = int(os.environ.get("CX_MEMORY_EVENTS", "600000"))
RATE = 5.0  # events per second of event time: 1 h of retention holds ~18k events
CUSTOMERS = 5000  # the steady scenario's customer base, sent first
BUDGET_S = float(os.environ.get("CX_MEMORY_BUDGET_S", "300"))  # stop sampling then, done or not
# windows, dedupe horizon and expiry are steady after two retentions (~40k events); the heap
# settles by ~170k (see above)
WARMUP = int(os.environ.get("CX_MEMORY_WARMUP", "200000"))
MAX_MB_PER_10K = 2.0  # growth allowed after warm-up (a dedupe entry alone is ~0.3 KB/event)
# A long run (make memory) is judged tighter: its slope is not the heap's settling. 2026-12-04:
# +0.03 over 10M; 2026-12-07, expiry behind the replay: +1.27 (1.4 GB at 10M), which passed.
LONG_RUN = 2_000_000
LONG_MAX_MB_PER_10K = 0.5


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _slope(points: list[tuple[float, float]]) -> float:
    """Theil-Sen slope of y over x: the median of the pairwise slopes. RSS has transient
    peaks of a few tens of MB (a batch's garbage before the allocator reuses it); a
    least-squares line tilts towards a peak near either end, the median does not."""
    slopes = sorted(
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(points)
        for x2, y2 in points[i + 1 :]
        if x2 != x1
    )
    return statistics.median(slopes) if slopes else 0.0


def test_rss_is_flat_after_warm_up(fresh_broker: EmbeddedBroker, tmp_path: Path) -> None:  # noqa: F811
    settings = Settings(broker=fresh_broker.url, app_id="cx-mem", partitions=4, min_sample=5,
                        windows=("5m", "1h"), dimensions=("all", "segment", "channel"),
                        emit_interval=1.0, session_timeout=6.0)  # fmt: skip
    worker = faults.spawn(settings, tmp_path, "mem")
    gen_log = open(tmp_path / "generate.log", "wb")  # noqa: SIM115 - closed below
    gen = None
    curve: list[dict[str, float]] = []
    try:
        faults.wait_up(worker)
        env = {**os.environ, **harness.settings_env(settings)}
        gen = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "generate", "--scenario", "steady",
             "--count", str(EVENTS), "--rate", str(RATE)],
            cwd=harness.ROOT, env=env, stdout=gen_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        total = EVENTS + CUSTOMERS
        t0 = time.monotonic()
        done = 0.0
        while time.monotonic() - t0 < BUDGET_S and done < total:
            time.sleep(1.0)
            done = sum(harness.events_total([worker]).values())
            curve.append({"t_s": round(time.monotonic() - t0, 1), "events": done,
                          "rss_mb": round(_rss_kib(worker.proc.pid) / 1024, 1)})  # fmt: skip
        assert worker.alive(), worker.log_tail()
    finally:
        if gen is not None and gen.poll() is None:
            gen.terminate()
            gen.wait(timeout=10)
        gen_log.close()
        worker.stop()
        # also when the run failed or timed out: the curve so far is what says why
        (tmp_path / "rss.json").write_text(json.dumps(curve, indent=1))
    print(f"\nRSS curve ({tmp_path / 'rss.json'}):")
    for row in curve[:: max(1, len(curve) // 25)] + curve[-1:]:
        print(f"  t={row['t_s']:6.1f}s events={int(row['events']):7d} rss={row['rss_mb']:7.1f} MB")
    after = [(r["events"], r["rss_mb"]) for r in curve if r["events"] >= WARMUP]
    assert after and after[-1][0] - after[0][0] >= 30_000, (
        f"too few events after warm-up to judge ({curve[-1]['events']:.0f} folded in {BUDGET_S} s)"
    )
    slope = _slope(after) * 10_000
    growth = after[-1][1] - after[0][1]
    print(f"after warm-up: {after[0][0]:.0f} -> {after[-1][0]:.0f} events, RSS {after[0][1]} -> "
          f"{after[-1][1]} MB ({growth:+.1f} MB), slope {slope:+.2f} MB per 10k events")  # fmt: skip
    limit = LONG_MAX_MB_PER_10K if after[-1][0] >= LONG_RUN else MAX_MB_PER_10K
    assert slope < limit, f"RSS grows {slope:.2f} MB per 10k events after warm-up"
