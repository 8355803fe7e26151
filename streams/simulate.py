"""Offline alert rehearsal: steady survey traffic with optional anomalies, folded through the
real stage-1 and stage-2 code in-process (no broker), with the alert engine evaluated as the
event-time watermark advances. Used by the alert tests and ``cxpulse alerts-sim`` to measure
detection delays and false-alarm rates over many simulated weeks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams import codecs
from streams.aggregate import Merger
from streams.alerting import AlertConfig, AlertEngine
from streams.events import TOPIC_SURVEYS
from streams.state import Folder, Record
from streams.windows import window_specs

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
SEGMENTS = ("enterprise", "mid-market", "smb", "consumer")
# steady answer distributions per segment: (promoter, passive) shares for NPS; detractors = rest
NPS_MIX = {"enterprise": (0.55, 0.30), "mid-market": (0.45, 0.33), "smb": (0.40, 0.32),
           "consumer": (0.35, 0.30)}  # fmt: skip


@dataclass(frozen=True)
class Anomaly:
    kind: str  # "detractor-spike" | "nps-drop"
    segment: str
    start_ms: int
    end_ms: int


@dataclass
class SimResult:
    transitions: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    # event index (in the segment's anomaly answers) at which each firing happened
    anomaly_answers_before: dict[str, int] = field(default_factory=dict)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def survey_stream(
    seed: int, start_ms: int, n: int, span_ms: int, anomaly: Anomaly | None = None,
    segments: tuple[str, ...] = SEGMENTS,
) -> Iterator[tuple[int, bytes, bytes]]:  # fmt: skip
    """``n`` responses (NPS 60%, CSAT 25%, CES 15%) evenly spread over ``span_ms``:
    ``(t_ms, key, value)`` in time order."""
    rng = random.Random(seed)
    step = span_ms / n
    for i in range(n):
        t = start_ms + int(i * step + rng.random() * step)
        seg = rng.choice(segments)
        cust = f"{seg[:3]}-{rng.randrange(2000)}"
        kind = rng.random()
        during = (
            anomaly is not None
            and anomaly.segment == seg
            and anomaly.start_ms <= t < anomaly.end_ms
        )
        if kind < 0.6:
            survey = "nps"
            prom, pas = NPS_MIX.get(seg, (0.45, 0.3))
            if during and anomaly is not None and anomaly.kind == "detractor-spike":
                prom, pas = prom * 0.4, pas * 0.4  # detractors jump to ~65-75%
            u = rng.random()
            score = (
                rng.choice((9, 10))
                if u < prom
                else rng.choice((7, 8))
                if u < prom + pas
                else rng.randrange(0, 7)
            )
        elif kind < 0.85:
            survey = "csat"
            score = rng.choices((1, 2, 3, 4, 5), weights=(5, 5, 15, 40, 35))[0]
        else:
            survey = "ces"
            score = rng.choices(range(1, 8), weights=(3, 4, 6, 12, 25, 30, 20))[0]
        event = {"response_id": f"s{seed}-{i}", "customer_id": cust, "survey": survey,
                 "score": score, "occurred_at": t, "segment": seg, "channel": "web"}  # fmt: skip
        yield t, cust.encode(), codecs.compact(orjson.dumps(event))


def simulate(
    events: Iterator[tuple[int, bytes, bytes]],
    *,
    config: AlertConfig | None = None,
    dimensions: tuple[str, ...] = ("segment",),
    evaluate_every_ms: int = 30 * 60_000,
    partitions: int = 2,
    restart_at_ms: int | None = None,
) -> SimResult:
    """Fold ``events`` and evaluate alerts every ``evaluate_every_ms`` of event time.

    ``restart_at_ms``: drop every in-memory object there and continue from the tables alone
    (what a restarted worker has after changelog recovery).
    """
    config = config or AlertConfig()
    windows = window_specs({"5m": 300, config.short_window: _secs(config.short_window),
                            config.baseline_window: _secs(config.baseline_window)})  # fmt: skip
    fold_table: dict[str, Any] = {}
    merge_table: dict[str, Any] = {}

    def make() -> tuple[Folder, Merger]:
        folder = Folder(TOPIC_SURVEYS, fold_table, windows, dimensions,
                        retention_ms=max(w.size_ms for w in windows), max_future_ms=10**15)  # fmt: skip
        merger = Merger(merge_table, windows, partitions=1, min_sample=config.min_sample,
                        emit_interval_ms=0, alerts=AlertEngine(config), track_idle=False)  # fmt: skip
        merger.restore({0})
        return folder, merger

    folder, merger = make()
    result = SimResult()
    offsets = [0] * partitions
    batch: list[Record] = []
    next_eval: int | None = None
    restarted = restart_at_ms is None

    def flush(now: int) -> None:
        out = folder.fold(batch, now)
        batch.clear()
        for k, v in out.state_writes().items():
            if v is None:
                fold_table.pop(k, None)
            else:
                fold_table[k] = v
        fold_table.update(out.progress)
        for key, value in out.partials:
            merger.apply(key, value, 0)
        for p, wm in out.watermarks.items():
            merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": f"s:{p}", "wm": wm}, 0)
        emission = merger.due(now, {0}, force=True)
        result.transitions.extend(t.record for t in emission.alerts)

    for t, key, value in events:
        p = hash(key) % partitions
        batch.append(Record(p, offsets[p], value, t, key))
        offsets[p] += 1
        result.events += 1
        if next_eval is None:
            next_eval = t + evaluate_every_ms
        if t >= next_eval:
            flush(t)
            next_eval = t + evaluate_every_ms
            if not restarted and restart_at_ms is not None and t >= restart_at_ms:
                folder, merger = make()
                restarted = True
    if batch:
        flush(next_eval or 0)
    return result


def _secs(window: str) -> int:
    from streams.settings import parse_duration

    return parse_duration(window)


def false_alarm_rates(weeks: int, seed: int = 1000, responses_per_week: int = 50_000,
                      config: AlertConfig | None = None) -> dict[str, float]:  # fmt: skip
    """Episodes opened per rule per simulated steady week (no anomaly)."""
    counts: dict[str, int] = {}
    t0 = 1_790_000_000_000
    for w in range(weeks):
        res = simulate(survey_stream(seed + w, t0, responses_per_week, WEEK_MS), config=config)
        for r in res.transitions:
            if r["state"] == "firing":
                counts[r["rule"]] = counts.get(r["rule"], 0) + 1
    return {rule: counts.get(rule, 0) / weeks for rule in ("nps_drop", "detractor_spike",
                                                          "csat_drop", "ces_drop")}  # fmt: skip


if __name__ == "__main__":  # python -m streams.simulate WEEKS
    import sys

    n_weeks = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(orjson.dumps(false_alarm_rates(n_weeks)).decode())
