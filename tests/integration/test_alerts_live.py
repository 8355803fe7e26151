"""A simulated week (50k responses, a one-hour detractor spike in one segment) through a real
worker on the embedded broker: the alerts on ``cx.alerts`` are exactly one firing and one
resolved ``detractor_spike`` for that segment, and identical to the offline simulation. The
worker is killed (SIGKILL) and restarted in the middle of the open episode: no second firing,
and the resolved record still arrives."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.settings import Settings
from streams.simulate import HOUR_MS, WEEK_MS, Anomaly, simulate, survey_stream
from streams.topics import INPUTS, create_topics, topic_specs
from tests.integration import faults, harness

pytestmark = pytest.mark.integration

T0 = int(time.time() * 1000) // HOUR_MS * HOUR_MS - WEEK_MS - HOUR_MS
SPIKE = Anomaly(
    "detractor-spike", "enterprise", T0 + 5 * 24 * HOUR_MS, T0 + 5 * 24 * HOUR_MS + HOUR_MS
)


def test_detractor_spike_week_on_a_real_worker(tmp_path: Path) -> None:
    events = list(survey_stream(7, T0, 50_000, WEEK_MS, SPIKE))
    expected = simulate(iter(events)).transitions
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        settings = Settings(broker=broker.url, app_id="cx-alerts", partitions=4,
                            windows=("5m", "1h", "7d"), dimensions=("segment",),
                            emit_interval=0.2, session_timeout=6.0)  # fmt: skip
        asyncio.run(create_topics(broker.bootstrap, topic_specs(settings)))
        cut = SPIKE.start_ms + 55 * 60_000  # the episode is open by then (it fires ~35 min in)
        first = [("cx.survey-responses", k, v) for t, k, v in events if t < cut]
        rest = [("cx.survey-responses", k, v) for t, k, v in events if t >= cut]

        def fold(part: list[tuple[str, bytes, bytes]], w: harness.Worker, alerts: int) -> None:
            """Produce ``part``; wait until stage 1 sealed it (not for committed offsets: Faust
            can stall its commits after a restart, docs/crash-safety.md) and stage 2 published
            at least ``alerts`` alert records, then 3 s for any extra ones."""
            ends = asyncio.run(harness.produce_tracked(broker.bootstrap, part))
            ends = {tp: o for tp, o in ends.items() if tp[0] in INPUTS}
            faults.wait_settled(broker, settings, ends, w, "input folded", 400)

            def published() -> bool:
                got = asyncio.run(harness.read_all(broker.bootstrap, "cx.alerts", idle_s=0.5))
                return len(got) >= alerts

            harness.wait_until(published, 120, f"{alerts} alert records", w.log_tail)
            time.sleep(3)

        worker = harness.Worker(settings, tmp_path, "w1")
        try:
            fold(first, worker, 1)
            before = [v for _k, v in asyncio.run(harness.read_all(broker.bootstrap, "cx.alerts"))]
            worker.stop(signal.SIGKILL)
            worker = harness.Worker(settings, tmp_path, "w2")
            fold(rest, worker, len(expected))
            alerts = [v for _k, v in asyncio.run(harness.read_all(broker.bootstrap, "cx.alerts"))]
            firing = worker.samples().get(
                (
                    "cx_alerts_firing",
                    (
                        ("dimension", "segment"),
                        ("member", "enterprise"),
                        ("rule", "detractor_spike"),
                    ),
                )  # fmt: skip
            )
        finally:
            worker.stop()
    assert [a["state"] for a in before] == ["firing"]  # open when the worker was killed
    spike = [a for a in alerts if a["rule"] == "detractor_spike" and a["member"] == "enterprise"]
    assert [a["state"] for a in spike] == ["firing", "resolved"], alerts
    assert [a for a in alerts if a not in spike] == []
    assert [(a["state"], a["alert_id"]) for a in alerts] == [
        (r["state"], r["alert_id"]) for r in expected
    ]  # the live worker and the offline simulation agree
    assert firing == 0  # the gauge went back to 0 once resolved
    delay_min = (harness_ms(spike[0]["updated_at"]) - SPIKE.start_ms) / 60_000
    answers = sum(1 for t, k, _v in events if SPIKE.start_ms <= t <= harness_ms(spike[0]["updated_at"])
                  and k.startswith(b"ent"))  # fmt: skip
    print(f"detection delay: {delay_min:.0f} min of event time, {answers} enterprise answers")
    assert delay_min < 60


def harness_ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
