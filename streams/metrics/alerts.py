"""Alert tests (SPEC §6) as pure functions of additive counts, plus the episode state machine.

Pure: no faust / aiokafka / prometheus / clock imports. Time is the caller's event time (the
watermark), so a replay of the same input raises the same alerts with the same ids.

Every test returns a :class:`TestResult` with two verdicts, ``fires`` and ``clear``; they are
never both true, and the gap between them is the hysteresis band:

========================  =====================================  ================================
test                      fires when                             clear ("clearly back") when
========================  =====================================  ================================
:func:`score_drop`        drop >= min_delta and                  drop <= clear_fraction·min_delta
                          drop > z_crit·sqrt(SE₁² + SE₂²)        (default half of min_delta), or
                                                                 drop < min_delta and p >= clear_p
:func:`detractor_spike`   exact binomial p < alpha               p >= clear_p (default 0.2)
:func:`churn_spike`       exact Poisson p < alpha and            p >= clear_p (default 0.2)
                          count >= min_short_count
:func:`slo_breach`        p90 > slo                              p90 <= clear_ratio·slo (0.9)
========================  =====================================  ================================

Sample-size guards: below ``min_sample`` (either side) a test neither fires nor clears, so an
open episode stays open until there is evidence either way. One exception: an *empty* short
window (n = 0, or no cancellations) clears, so an episode of a member that went quiet ends
within one short window instead of staying open forever.

Baselines: the tests accept whatever baseline counts the caller passes. Passing the baseline
window *minus* the short window (:func:`exclude`) compares against the previous period only;
passing the overlapping window is conservative (a spike also raises its own baseline).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from streams.metrics.base import FlatCounts
from streams.metrics.intervals import Z95, sample_sd
from streams.metrics.scores import Score
from streams.metrics.stats import CesCounts, CsatCounts, NpsCounts

_REL_EPS = 1e-17  # stop summing pmf terms once they no longer change the sum in double precision
_VALUE_EPS = 1e-9  # thresholds on float percentages: 40.0 - 30.000000000000004 is a 10-point drop


@dataclass(frozen=True, slots=True)
class TestResult:
    """Outcome of one alert test. ``fires`` and ``clear`` are never both true.

    ``statistic``: z for score_drop, the observed count k for the exact tests, the p90 (s) for
    slo_breach; None when not computed. ``delta``: current − baseline in the metric's unit
    (percentage points for shares, count − expected count for churn, p90 − slo in seconds).
    """

    __test__ = False  # not a pytest test class despite the name

    fires: bool
    clear: bool
    statistic: float | None
    p_value: float | None
    delta: float | None
    test: str


# -- distribution tails ----------------------------------------------------------------------


def normal_upper_tail(z: float) -> float:
    """P[Z >= z] for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _sum_terms(
    first: float, ratio: Callable[[int], float], j: int, step: int, stop: int | None
) -> float:
    """``first + first·ratio(j) + ...``, stepping j by ``step`` until ``stop`` or negligible.

    ``ratio(j)`` is pmf(j + step)/pmf(j). Callers start on the far side of the mode, so terms
    only shrink and the first negligible one ends the sum (a few thousand steps at n = 1e6).
    """
    term = total = first
    while j != stop:
        term *= ratio(j)
        j += step
        total += term
        if term <= total * _REL_EPS:
            break
    return total


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P[X >= k] for X ~ Binomial(n, p), exact up to float rounding (rel. error ~1e-9 at 1e6).

    Sums pmf terms in the direction in which they shrink, starting from a log-space pmf
    (``math.lgamma``): the upper tail directly when k lies above the mean, else 1 − P[X <= k−1]
    (which is then >= ~0.5, so the subtraction loses nothing).
    """
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binomial needs n >= 0 and 0 <= p <= 1, got n={n}, p={p}")
    if k <= 0:
        return 1.0
    if k > n or p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    odds = p / (1.0 - p)
    log_norm = math.lgamma(n + 1) + n * math.log1p(-p)

    def pmf(j: int) -> float:
        return math.exp(log_norm - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * math.log(odds))

    if k > n * p:
        return min(1.0, _sum_terms(pmf(k), lambda j: (n - j) / (j + 1) * odds, k, 1, n))
    lower = _sum_terms(pmf(k - 1), lambda j: j / ((n - j + 1) * odds), k - 1, -1, 0)
    return max(0.0, 1.0 - lower)


def poisson_upper_tail(k: int, mu: float) -> float:
    """P[X >= k] for X ~ Poisson(mu), exact up to float rounding; same method as the binomial."""
    if not (mu >= 0.0 and math.isfinite(mu)):
        raise ValueError(f"poisson needs a finite mean >= 0, got {mu}")
    if k <= 0:
        return 1.0
    if mu == 0.0:
        return 0.0
    log_mu = math.log(mu)

    def pmf(j: int) -> float:
        return math.exp(j * log_mu - mu - math.lgamma(j + 1))

    if k > mu:
        # no upper end: the negligible-term test ends the sum
        return min(1.0, _sum_terms(pmf(k), lambda j: mu / (j + 1), k, 1, None))
    return max(0.0, 1.0 - _sum_terms(pmf(k - 1), lambda j: j / mu, k - 1, -1, 0))


# -- estimates with standard errors (score_drop inputs) ----------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate, its standard error (same unit) and its sample size."""

    value: float | None
    se: float | None
    n: int


def nps_se(c: NpsCounts) -> float | None:
    """SE of NPS (points): 100·sqrt((p + d − (p − d)²)/n) (SPEC §3), unclipped."""
    if c.n <= 0:
        return None
    p, d = c.promoters / c.n, c.detractors / c.n
    return 100.0 * math.sqrt(max(0.0, (p + d - (p - d) ** 2) / c.n))


def proportion_se(k: int, n: int, scale: float = 100.0) -> float | None:
    """SE of the share k/n: scale·sqrt(p(1 − p)/n) (percentage points by default)."""
    if n <= 0:
        return None
    p = k / n
    return scale * math.sqrt(max(0.0, p * (1.0 - p) / n))


def mean_se(c: CsatCounts | CesCounts) -> float | None:
    """SE of the mean answer: s/sqrt(n); None below n = 2."""
    sd = sample_sd(c.total, c.total_sq, c.n)
    return None if sd is None else sd / math.sqrt(c.n)


def nps_estimate(c: NpsCounts) -> Estimate:
    value = 100.0 * (c.promoters - c.detractors) / c.n if c.n > 0 else None
    return Estimate(value, nps_se(c), c.n)


def csat_estimate(c: CsatCounts) -> Estimate:
    """CSAT = top-2-box share, in percent."""
    value = 100.0 * c.satisfied / c.n if c.n > 0 else None
    return Estimate(value, proportion_se(c.satisfied, c.n), c.n)


def mean_estimate(c: CsatCounts | CesCounts) -> Estimate:
    """Mean answer (CES; CSAT mean), on the default scale."""
    return Estimate(c.total / c.n if c.n > 0 else None, mean_se(c), c.n)


ESTIMATORS: dict[str, Callable[[Any], Estimate]] = {
    "nps": nps_estimate,
    "csat": csat_estimate,
    "csat_mean": mean_estimate,
    "ces": mean_estimate,
}
"""Estimate of each metric a drop rule can watch (``nps_drop``→nps, ...), from its counts."""

C = TypeVar("C", bound=FlatCounts)


def exclude(baseline: C, short: C) -> C:
    """``baseline − short`` field by field: the baseline period without the short window."""
    fields = [b - s for b, s in zip(baseline.to_list(), short.to_list(), strict=True)]
    if any(f < -_VALUE_EPS for f in fields):
        raise ValueError(f"short window {short!r} is not contained in baseline {baseline!r}")
    return type(baseline).from_list([max(f, 0) for f in fields])


# -- the tests ---------------------------------------------------------------------------------


def _quiet(test: str, clear: bool) -> TestResult:
    """Not enough data to test: never fires; clears only when ``clear`` (an empty window)."""
    return TestResult(False, clear, None, None, None, test)


def score_drop(
    current: Estimate,
    baseline: Estimate,
    *,
    min_delta: float,
    min_sample: int,
    z_crit: float = Z95,
    clear_fraction: float = 0.5,
    clear_p: float = 0.2,
) -> TestResult:
    """``nps_drop`` / ``csat_drop`` / ``ces_drop``: is the short window significantly lower?

    ``current`` and ``baseline`` come from :data:`ESTIMATORS`; ``min_delta`` is in the metric's
    unit (NPS points, CSAT percentage points, CES scale points). ``statistic`` is
    z = drop / sqrt(SE₁² + SE₂²) and ``p_value`` its one-sided normal p; with both SEs 0
    (all answers equal on both sides) z is infinite: reported as None, p as 0 or 1.
    """
    if min_delta < 0 or not 0 <= clear_fraction <= 1:
        raise ValueError("score_drop needs min_delta >= 0 and 0 <= clear_fraction <= 1")
    test = "z_two_sample"
    if current.n == 0:
        return _quiet(test, clear=True)
    if (
        current.n < min_sample
        or baseline.n < min_sample
        or current.value is None
        or baseline.value is None
        or current.se is None
        or baseline.se is None
    ):
        return _quiet(test, clear=False)
    delta = current.value - baseline.value
    drop = -delta
    se = math.hypot(current.se, baseline.se)
    z: float | None
    if se > 0:
        z = drop / se
        p = normal_upper_tail(z)
    else:
        z = 0.0 if drop == 0 else None
        p = 0.5 if drop == 0 else (0.0 if drop > 0 else 1.0)
    significant = drop > z_crit * se
    fires = drop >= min_delta - _VALUE_EPS and significant
    clear = drop <= clear_fraction * min_delta + _VALUE_EPS or (
        drop < min_delta - _VALUE_EPS and p >= clear_p
    )
    return TestResult(fires, clear and not fires, z, p, delta, test)


def detractor_spike(
    short: NpsCounts,
    baseline: NpsCounts,
    *,
    alpha: float = 0.01,
    min_sample: int,
    clear_p: float = 0.2,
) -> TestResult:
    """Exact one-sided binomial test of k = short.detractors of n = short.n against p₀ = the
    baseline detractor share: p = P[X >= k | n, p₀]. ``delta`` in percentage points.

    A baseline without detractors (p₀ = 0) makes any detractor a spike (p = 0): the exact
    answer; ``min_sample`` on the baseline is what keeps p₀ meaningful.
    """
    if not 0 < alpha <= clear_p <= 1:
        raise ValueError("detractor_spike needs 0 < alpha <= clear_p <= 1")
    test = "binomial_exact"
    if short.n == 0:
        return _quiet(test, clear=True)
    if short.n < min_sample or baseline.n < min_sample:
        return _quiet(test, clear=False)
    p0 = baseline.detractors / baseline.n
    delta = 100.0 * (short.detractors / short.n - p0)
    p = binomial_upper_tail(short.detractors, short.n, p0)
    return TestResult(p < alpha, p >= clear_p, float(short.detractors), p, delta, test)


def churn_spike(
    short_count: int,
    short_exposure: float,
    baseline_count: int,
    baseline_exposure: float,
    *,
    alpha: float = 0.01,
    min_count: int = 30,
    min_short_count: int = 3,
    clear_p: float = 0.2,
) -> TestResult:
    """Exact one-sided Poisson test of the short window's cancellations against the baseline
    rate: mu = baseline_count / baseline_exposure · short_exposure, p = P[X >= short_count | mu].

    Exposure is what the rate is per, the same unit on both sides: the window length (rate per
    second), or active customers × window length (customer-seconds) when the active base is
    known, so that a growing base does not look like a spike. ``min_count``: cancellations the
    baseline needs for its rate to mean something; ``min_short_count``: never page on one or two
    cancellations however quiet the baseline. ``delta`` = short_count − mu.
    """
    if not 0 < alpha <= clear_p <= 1:
        raise ValueError("churn_spike needs 0 < alpha <= clear_p <= 1")
    if min(short_count, baseline_count) < 0 or not (short_exposure >= 0 and baseline_exposure >= 0):
        raise ValueError("churn_spike needs counts >= 0 and exposures >= 0")
    test = "poisson_exact"
    if baseline_count < min_count or baseline_exposure <= 0 or short_exposure <= 0:
        return _quiet(test, clear=short_count == 0)
    mu = baseline_count / baseline_exposure * short_exposure
    p = poisson_upper_tail(short_count, mu)
    fires = p < alpha and short_count >= min_short_count
    clear = p >= clear_p
    return TestResult(fires, clear, float(short_count), p, short_count - mu, test)


def slo_breach(
    p90_s: float | None, n: int, *, slo_s: float, min_sample: int, clear_ratio: float = 0.9
) -> TestResult:
    """``first_response_slo``: fires when p90 > slo; clear when p90 <= clear_ratio·slo."""
    if slo_s <= 0 or not 0 < clear_ratio <= 1:
        raise ValueError("slo_breach needs slo_s > 0 and 0 < clear_ratio <= 1")
    test = "p90_threshold"
    if n == 0:
        return _quiet(test, clear=True)
    if p90_s is None or n < min_sample:
        return _quiet(test, clear=False)
    return TestResult(p90_s > slo_s, p90_s <= clear_ratio * slo_s, p90_s, None, p90_s - slo_s, test)


# -- episodes: hysteresis + cooldown -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpisodeState:
    """Per (rule, window, dimension, member). While not firing, ``last_change_ms`` is the time
    of the last resolve (cooldown reference) and ``alert_id``/``started_at_ms`` still name the
    episode that ended, so a ``resolved`` record can be built from the new state."""

    firing: bool = False
    started_at_ms: int | None = None
    last_change_ms: int | None = None
    alert_id: str | None = None

    def to_list(self) -> list[Any]:
        return [self.firing, self.started_at_ms, self.last_change_ms, self.alert_id]

    @classmethod
    def from_list(cls, data: list[Any]) -> EpisodeState:
        if len(data) != 4:
            raise ValueError(f"EpisodeState: expected 4 fields, got {data!r}")
        firing, started, changed, alert_id = data
        return cls(
            bool(firing),
            None if started is None else int(started),
            None if changed is None else int(changed),
            None if alert_id is None else str(alert_id),
        )


def episode_id(rule: str, window: str, dimension: str, member: str, started_at_ms: int) -> str:
    """Deterministic alert id: the same input replayed yields the same id."""
    return f"{rule}|{window}|{dimension}={member}|{started_at_ms}"


def step(
    state: EpisodeState,
    result: TestResult,
    now_ms: int,
    *,
    cooldown_ms: int,
    min_firing_ms: int = 0,
    new_id: Callable[[], str] | str,
) -> tuple[EpisodeState, str | None]:
    """Advance one episode; returns the new state and the transition (``"firing"``,
    ``"resolved"`` or None).

    * Opens only when ``result.fires`` and at least ``cooldown_ms`` have passed since the last
      resolve (event time: ``now_ms`` is the watermark).
    * Closes only when ``result.clear`` (not merely "no longer fires") and the episode has
      lasted at least ``min_firing_ms``.
    * ``new_id`` is called only when an episode opens.
    """
    if not state.firing:
        if not result.fires:
            return state, None
        if state.last_change_ms is not None and now_ms - state.last_change_ms < cooldown_ms:
            return state, None
        alert_id = new_id if isinstance(new_id, str) else new_id()
        return EpisodeState(True, now_ms, now_ms, alert_id), "firing"
    started = state.started_at_ms if state.started_at_ms is not None else now_ms
    if result.clear and now_ms - started >= min_firing_ms:
        return replace(state, firing=False, last_change_ms=now_ms), "resolved"
    return state, None


# -- summary sentence --------------------------------------------------------------------------

_LABELS = {
    "nps": "NPS",
    "csat": "CSAT",
    "csat_mean": "Mean CSAT",
    "ces": "CES",
    "detractor_share": "Detractors",
    "cancellations": "Cancellations",
    "first_response_p90_s": "First-response p90",
}
_PERCENT = {"csat", "detractor_share", "ces_easy_share"}
_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}


def _trim(x: float, digits: int) -> str:
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _format(metric: str, value: float | None) -> str:
    if value is None:
        return "no value"
    if metric in _PERCENT:
        return f"{value:.0f}%"
    if metric.endswith("_s"):
        for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
            if value >= size:
                return f"{_trim(value / size, 1)}{unit}"
        return f"{value:.0f}s"
    if metric in ("ces", "csat_mean"):
        return f"{value:.2f}"
    return _trim(value, 1)


def _span(window: str) -> str:
    """``1h`` -> ``hour``, ``7d`` -> ``7 days``."""
    m = re.fullmatch(r"(\d+)([smhdw])", window)
    if m is None:
        return window
    count, unit = int(m.group(1)), _UNITS[m.group(2)]
    return unit if count == 1 else f"{count} {unit}s"


def summary(
    rule: str,
    metric: str,
    window: str,
    dimension: str,
    member: str,
    current: Score,
    baseline: Score,
    p_value: float | None,
    *,
    baseline_window: str | None = None,
    state: str = "firing",
) -> str:
    """One human sentence for an alert record, e.g. "Detractors in segment=enterprise rose to
    41% over the last hour (n=212) against 18% over the previous 7 days (p<0.001)".

    For ``churn_spike`` the baseline value is the expected count; for ``first_response_slo`` it
    is the SLO (and ``baseline_window`` is ignored).
    """
    where = "overall" if dimension == "all" else f"in {dimension}={member}"
    if state == "resolved":
        verb = "is back to"
    elif rule == "first_response_slo":
        verb = "is"
    else:
        verb = "rose to" if rule in ("detractor_spike", "churn_spike") else "fell to"
    text = f"{_LABELS.get(metric, metric)} {where} {verb} {_format(metric, current.value)}"
    text += f" over the last {_span(window)}"
    if metric != "cancellations":
        text += f" (n={current.n})"
    base = _format(metric, baseline.value)
    if rule == "first_response_slo":
        text += f" against an SLO of {base}"
    else:
        over = "from" if rule == "churn_spike" else "over"
        when = f" {over} the previous {_span(baseline_window)}" if baseline_window else ""
        text += f" against {base}{' expected' if rule == 'churn_spike' else ''}{when}"
    if p_value is not None:
        text += " (p<0.001)" if p_value < 0.001 else f" (p={p_value:.3f})"
    return text
