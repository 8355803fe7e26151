"""Prometheus bundle (SPEC §7). The registry is injected; tests use a fresh CollectorRegistry.

"metrics" in this code base means business metrics (NPS, CSAT...); this module is telemetry.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Support latencies span seconds to weeks.
LATENCY_BUCKETS = (
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
    172800,
    604800,
)
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SCORE_LABELS = ("metric", "window", "dimension", "member")


class LabelCap:
    """Bounded label values: at most ``limit`` per label name, the rest become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[str, set[str]] = {}

    def __call__(self, name: str, value: str) -> str:
        seen = self.seen.setdefault(name, set())
        if value in seen:
            return value
        if len(seen) < self.limit:
            seen.add(value)
            return value
        return "other"


@dataclass(frozen=True)
class Telemetry:
    registry: CollectorRegistry
    events: Counter
    dead_letters: Counter
    responses: Counter
    cancellations: Counter
    cancelled_mrr: Counter
    first_response: Histogram
    resolution: Histogram
    score: Gauge
    score_samples: Gauge
    score_ci_low: Gauge
    score_ci_high: Gauge
    alerts_firing: Gauge
    watermark_lag: Gauge
    processing: Histogram
    scores_emitted: Counter
    agent_crashes: Counter
    cap: LabelCap
    # labels -> [samples, value, ci low, ci high] children of the score gauges, None while the
    # series is absent: set_score runs for every emitted score, and prometheus_client's
    # labels()/remove() (lock, validation, a KeyError for an absent series) were ~7% of the
    # worker's main thread. Only set_score and drop_score touch these four gauges.
    _score_children: dict[tuple[str, ...], list[Any]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def create(cls, registry: CollectorRegistry, max_members: int = 50) -> Telemetry:
        r = registry
        return cls(
            registry=r,
            events=Counter(
                "cx_events", "Input records by outcome", ("topic", "outcome"), registry=r
            ),
            dead_letters=Counter(
                "cx_dead_letters",
                "Dead-lettered records by reason",
                ("topic", "reason"),
                registry=r,
            ),
            responses=Counter(
                "cx_responses",
                "Survey responses applied, by category",
                ("survey", "category", "segment", "channel"),
                registry=r,
            ),
            cancellations=Counter(
                "cx_cancellations", "Cancellations applied", ("segment",), registry=r
            ),
            cancelled_mrr=Counter(
                "cx_cancelled_mrr", "Monthly recurring revenue lost", ("segment",), registry=r
            ),
            first_response=Histogram(
                "cx_support_first_response_seconds",
                "Ticket opened to first response",
                ("channel",),
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            resolution=Histogram(
                "cx_support_resolution_seconds",
                "Ticket opened to resolved",
                ("channel",),
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            score=Gauge("cx_score", "Current windowed score value", SCORE_LABELS, registry=r),
            score_samples=Gauge(
                "cx_score_samples", "Observations behind cx_score", SCORE_LABELS, registry=r
            ),
            score_ci_low=Gauge(
                "cx_score_ci95_low", "Lower 95% bound of cx_score", SCORE_LABELS, registry=r
            ),
            score_ci_high=Gauge(
                "cx_score_ci95_high", "Upper 95% bound of cx_score", SCORE_LABELS, registry=r
            ),
            alerts_firing=Gauge(
                "cx_alerts_firing",
                "1 while an alert episode is open",
                ("rule", "dimension", "member"),
                registry=r,
            ),
            watermark_lag=Gauge(
                "cx_watermark_lag_seconds",
                "Wall clock minus the topic watermark",
                ("topic",),
                registry=r,
            ),
            processing=Histogram(
                "cx_processing_seconds",
                "Ingest (broker timestamp) to score update",
                buckets=PROCESSING_BUCKETS,
                registry=r,
            ),
            scores_emitted=Counter(
                "cx_scores_emitted", "Score records published to cx.scores", registry=r
            ),
            agent_crashes=Counter(
                "cx_agent_crashes",
                "Agent crashes (Faust restarts the agent; streams/supervision.py)",
                ("agent",),
                registry=r,
            ),
            cap=LabelCap(max_members),
        )

    def set_score(
        self,
        labels: tuple[str, str, str, str],
        value: float | None,
        n: int,
        low: float | None,
        high: float | None,
    ) -> None:
        """Gauges of one score; the value series is absent while the value is null."""
        children = self._score_children.get(labels)
        if children is None:
            samples = self.score_samples.labels(*labels)
            children = self._score_children[labels] = [samples, None, None, None]
        children[0].set(n)
        for i, gauge, v in (
            (1, self.score, value),
            (2, self.score_ci_low, low),
            (3, self.score_ci_high, high),
        ):
            child = children[i]
            if v is None:
                if child is not None:
                    with contextlib.suppress(KeyError):
                        gauge.remove(*labels)
                    children[i] = None
            else:
                if child is None:
                    child = children[i] = gauge.labels(*labels)
                child.set(v)

    def drop_score(self, labels: tuple[str, str, str, str]) -> None:
        self._score_children.pop(labels, None)
        for gauge in (self.score, self.score_samples, self.score_ci_low, self.score_ci_high):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
