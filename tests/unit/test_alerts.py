"""Table tests of streams.metrics.alerts: exact tails against scipy, the four alert tests with
worked examples (including below-min_sample rows that never fire), the episode state machine
and the summary sentence."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest, norm, poisson

from streams.metrics.alerts import (
    ESTIMATORS,
    EpisodeState,
    Estimate,
    TestResult,
    binomial_upper_tail,
    churn_spike,
    csat_estimate,
    detractor_spike,
    episode_id,
    exclude,
    mean_estimate,
    nps_estimate,
    nps_se,
    poisson_upper_tail,
    proportion_se,
    score_drop,
    slo_breach,
    step,
    summary,
)
from streams.metrics.scores import Score, nps
from streams.metrics.stats import CesCounts, CsatCounts, NpsCounts

REL = 1e-6
HOUR_S = 3600.0
WEEK_S = 7 * 86400.0

# -- exact tails ------------------------------------------------------------------------------


def _binomial_grid() -> list[tuple[int, int, float]]:
    rows = []
    for n in (1, 7, 30, 212, 1_000, 10_000, 100_000):
        for p in (0.001, 0.05, 0.18, 0.5, 0.93):
            sd = math.sqrt(n * p * (1 - p))
            ks = {0, 1, n, round(n * p), round(n * p) + 1}
            ks |= {math.floor(n * p + z * sd) for z in (-3, -1, 1, 2, 3.3, 5, 8)}
            rows += [(k, n, p) for k in sorted(ks) if 0 <= k <= n]
    return rows


@pytest.mark.parametrize(("k", "n", "p"), _binomial_grid())
def test_binomial_tail_matches_scipy(k: int, n: int, p: float) -> None:
    expected = binomtest(k, n, p, alternative="greater").pvalue
    assert binomial_upper_tail(k, n, p) == pytest.approx(expected, rel=REL, abs=1e-300)


def _poisson_grid() -> list[tuple[int, float]]:
    rows = []
    for mu in (0.01, 0.24, 2.38, 30.0, 1_000.0, 100_000.0):
        sd = math.sqrt(mu)
        ks = {0, 1, 2, 3, math.floor(mu), math.floor(mu) + 1}
        ks |= {math.floor(mu + z * sd) for z in (-3, -1, 1, 2, 3.3, 5, 8)}
        rows += [(k, mu) for k in sorted(ks) if k >= 0]
    return rows


@pytest.mark.parametrize(("k", "mu"), _poisson_grid())
def test_poisson_tail_matches_scipy(k: int, mu: float) -> None:
    expected = poisson.sf(k - 1, mu)
    assert poisson_upper_tail(k, mu) == pytest.approx(expected, rel=REL, abs=1e-300)


def test_tails_at_a_million() -> None:
    # n = 1e6: binomial against scipy. For the Poisson at mu = 1e6, scipy's own sf is off by
    # ~5e-6 relative here, so the reference is a 60-digit Decimal sum (Stirling ln k!).
    k, n, p = 500_800, 1_000_000, 0.5
    assert binomial_upper_tail(k, n, p) == pytest.approx(
        binomtest(k, n, p, alternative="greater").pvalue, rel=REL
    )
    assert poisson_upper_tail(1_005_000, 1e6) == pytest.approx(2.934034048031641e-07, rel=1e-8)


@pytest.mark.parametrize(
    ("k", "n", "p", "expected"),
    [
        (0, 10, 0.3, 1.0),  # P[X >= 0] = 1
        (-2, 10, 0.3, 1.0),
        (11, 10, 0.3, 0.0),  # more successes than trials
        (1, 10, 0.0, 0.0),  # p0 = 0: X is always 0
        (0, 10, 0.0, 1.0),
        (10, 10, 1.0, 1.0),  # p0 = 1: X is always n
        (1, 0, 0.5, 0.0),  # n = 0
        (10, 10, 0.5, 0.5**10),
        (1, 10, 0.5, 1 - 0.5**10),
    ],
)
def test_binomial_tail_edges(k: int, n: int, p: float, expected: float) -> None:
    assert binomial_upper_tail(k, n, p) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("k", "mu", "expected"),
    [(0, 0.0, 1.0), (1, 0.0, 0.0), (0, 5.0, 1.0), (1, 2.0, 1 - math.exp(-2.0))],
)
def test_poisson_tail_edges(k: int, mu: float, expected: float) -> None:
    assert poisson_upper_tail(k, mu) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: binomial_upper_tail(1, 10, -0.1),
        lambda: binomial_upper_tail(1, 10, 1.5),
        lambda: binomial_upper_tail(1, -1, 0.5),
        lambda: poisson_upper_tail(1, -1.0),
        lambda: poisson_upper_tail(1, math.inf),
        lambda: poisson_upper_tail(1, math.nan),
    ],
)
def test_tails_reject_bad_parameters(call: Callable[[], float]) -> None:
    with pytest.raises(ValueError):
        call()


@given(
    n=st.integers(1, 100_000),
    p=st.floats(1e-6, 1 - 1e-6),
    frac=st.floats(0.0, 1.0),
)
def test_binomial_tail_is_monotone_in_k(n: int, p: float, frac: float) -> None:
    k = math.floor(frac * n)
    here, after = binomial_upper_tail(k, n, p), binomial_upper_tail(k + 1, n, p)
    assert 0.0 <= after <= here <= 1.0


@given(mu=st.floats(0.0, 1e5), k=st.integers(0, 120_000))
def test_poisson_tail_is_monotone_in_k(mu: float, k: int) -> None:
    here, after = poisson_upper_tail(k, mu), poisson_upper_tail(k + 1, mu)
    assert 0.0 <= after <= here <= 1.0


# -- standard errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "c", [NpsCounts(100, 30, 30, 40), NpsCounts(1000, 500, 300, 200), NpsCounts(57, 20, 20, 17)]
)
def test_nps_se_is_the_spec_interval_half_width(c: NpsCounts) -> None:
    score = nps(c, 1)  # these intervals are not clipped
    assert score.ci95_low is not None and score.ci95_high is not None
    assert nps_se(c) == pytest.approx((score.ci95_high - score.ci95_low) / (2 * 1.96), rel=1e-12)


def test_standard_errors_of_shares_and_means() -> None:
    assert proportion_se(70, 100) == pytest.approx(100 * math.sqrt(0.7 * 0.3 / 100))
    assert proportion_se(1, 4, scale=1.0) == pytest.approx(math.sqrt(0.25 * 0.75 / 4))
    assert proportion_se(0, 0) is None and nps_se(NpsCounts()) is None
    c = CesCounts()
    for score in (3, 5, 4, 7, 6):
        c.add(score)
    # sample sd of 3,5,4,7,6 is sqrt(2.5)
    est = mean_estimate(c)
    assert (est.value, est.n) == (5.0, 5)
    assert est.se == pytest.approx(math.sqrt(2.5 / 5))
    single = CesCounts()
    single.add(4)
    assert mean_estimate(single) == Estimate(4.0, None, 1)
    assert nps_estimate(NpsCounts()) == Estimate(None, None, 0)
    assert set(ESTIMATORS) == {"nps", "csat", "csat_mean", "ces"}


# -- score_drop --------------------------------------------------------------------------------


def ces_counts(answers: dict[int, int]) -> CesCounts:
    c = CesCounts()
    for score, times in answers.items():
        for _ in range(times):
            c.add(score)
    return c


BASE_NPS = NpsCounts(1000, 500, 300, 200)  # NPS 30, SE 2.47

DROP_ROWS: list[tuple[str, str, Any, Any, float, bool, bool]] = [
    # id, metric, current counts, baseline counts, min_delta, fires, clear
    ("nps-40-point-drop", "nps", NpsCounts(100, 30, 30, 40), BASE_NPS, 10, True, False),
    ("nps-drop-exactly-min-delta", "nps", NpsCounts(10_000, 4000, 4000, 2000), BASE_NPS, 10,
     True, False),
    ("nps-30-drop-not-significant", "nps", NpsCounts(30, 12, 6, 12), BASE_NPS, 10, False, False),
    ("nps-band-7-significant", "nps", NpsCounts(1000, 430, 370, 200), BASE_NPS, 10, False, False),
    ("nps-band-6-noise", "nps", NpsCounts(50, 22, 18, 10), BASE_NPS, 10, False, True),
    ("nps-back-within-half", "nps", NpsCounts(100, 48, 32, 20), BASE_NPS, 10, False, True),
    ("nps-above-baseline", "nps", NpsCounts(100, 80, 10, 10), BASE_NPS, 10, False, True),
    ("nps-current-29-extreme", "nps", NpsCounts(29, 0, 0, 29), BASE_NPS, 10, False, False),
    ("nps-baseline-29-extreme", "nps", NpsCounts(500, 0, 0, 500), NpsCounts(29, 29, 0, 0), 10,
     False, False),
    ("nps-current-empty", "nps", NpsCounts(), BASE_NPS, 10, False, True),
    ("csat-15-point-drop", "csat", CsatCounts(100, 70, 10, 20), CsatCounts(1000, 850, 100, 50),
     5, True, False),
    ("csat-drop-but-n-29", "csat", CsatCounts(29, 0, 0, 29), CsatCounts(1000, 850, 100, 50), 5,
     False, False),
    ("ces-1.5-drop", "ces", ces_counts({3: 25, 5: 25}), ces_counts({5: 250, 6: 250}), 0.5,
     True, False),
    ("ces-flat", "ces", ces_counts({5: 20, 6: 20}), ces_counts({5: 250, 6: 250}), 0.5,
     False, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "current", "baseline", "min_delta", "fires", "clear"),
    [row[1:] for row in DROP_ROWS],
    ids=[row[0] for row in DROP_ROWS],
)
def test_score_drop_table(
    metric: str, current: Any, baseline: Any, min_delta: float, fires: bool, clear: bool
) -> None:
    cur, base = ESTIMATORS[metric](current), ESTIMATORS[metric](baseline)
    got = score_drop(cur, base, min_delta=min_delta, min_sample=30)
    assert (got.fires, got.clear) == (fires, clear)
    assert got.test == "z_two_sample"
    if current.n >= 30 and baseline.n >= 30:
        assert cur.value is not None and base.value is not None
        assert cur.se is not None and base.se is not None
        z = (base.value - cur.value) / math.sqrt(cur.se**2 + base.se**2)
        assert got.statistic == pytest.approx(z, rel=1e-12)
        assert got.p_value == pytest.approx(norm.sf(z), rel=REL, abs=1e-300)
        assert got.delta == pytest.approx(cur.value - base.value)
    else:
        assert got.statistic is None and got.p_value is None


def test_score_drop_worked_example() -> None:
    # NPS -10 (n=100, SE 100·sqrt(0.69/100)) against 30 (n=1000, SE 100·sqrt(0.61/1000)).
    got = score_drop(
        nps_estimate(NpsCounts(100, 30, 30, 40)), nps_estimate(BASE_NPS), min_delta=10,
        min_sample=30,
    )  # fmt: skip
    z = 40 / math.sqrt(69.0 + 6.1)
    assert (got.fires, got.clear, got.test) == (True, False, "z_two_sample")
    assert (got.statistic, got.p_value, got.delta) == pytest.approx((z, norm.sf(z), -40.0))


def test_score_drop_with_zero_standard_errors() -> None:
    # every answer identical on both sides: SE 0, the drop is certain
    got = score_drop(
        csat_estimate(CsatCounts(40, 0, 0, 40)), csat_estimate(CsatCounts(400, 400, 0, 0)),
        min_delta=5, min_sample=30,
    )  # fmt: skip
    assert (got.fires, got.clear, got.statistic, got.p_value) == (True, False, None, 0.0)
    same = score_drop(Estimate(80.0, 0.0, 40), Estimate(80.0, 0.0, 40), min_delta=5, min_sample=30)
    assert (same.fires, same.clear, same.p_value) == (False, True, 0.5)


def test_score_drop_rejects_negative_min_delta() -> None:
    with pytest.raises(ValueError):
        score_drop(Estimate(1.0, 1.0, 50), Estimate(2.0, 1.0, 50), min_delta=-1, min_sample=30)


# -- detractor_spike ---------------------------------------------------------------------------

BASE_18 = NpsCounts(5000, 2500, 1600, 900)  # detractor share 18 %

SPIKE_ROWS: list[tuple[str, NpsCounts, NpsCounts, bool, bool]] = [
    ("41-percent-vs-18", NpsCounts(212, 60, 65, 87), BASE_18, True, False),
    ("same-share", NpsCounts(200, 100, 64, 36), BASE_18, False, True),
    ("23-percent-band", NpsCounts(200, 90, 64, 46), BASE_18, False, False),
    ("below-share", NpsCounts(200, 150, 40, 10), BASE_18, False, True),
    ("short-29-all-detractors", NpsCounts(29, 0, 0, 29), BASE_18, False, False),
    ("baseline-29", NpsCounts(500, 0, 0, 500), NpsCounts(29, 29, 0, 0), False, False),
    ("baseline-without-detractors", NpsCounts(30, 29, 0, 1), NpsCounts(100, 100, 0, 0), True,
     False),
    ("baseline-all-detractors", NpsCounts(30, 0, 0, 30), NpsCounts(100, 0, 0, 100), False, True),
    ("short-empty", NpsCounts(), BASE_18, False, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("short", "baseline", "fires", "clear"),
    [row[1:] for row in SPIKE_ROWS],
    ids=[row[0] for row in SPIKE_ROWS],
)
def test_detractor_spike_table(
    short: NpsCounts, baseline: NpsCounts, fires: bool, clear: bool
) -> None:
    got = detractor_spike(short, baseline, min_sample=30)
    assert (got.fires, got.clear) == (fires, clear)
    assert got.test == "binomial_exact"
    if short.n >= 30 and baseline.n >= 30:
        p0 = baseline.detractors / baseline.n
        expected = binomtest(short.detractors, short.n, p0, alternative="greater").pvalue
        assert got.p_value == pytest.approx(expected, rel=REL, abs=1e-300)
        assert got.statistic == short.detractors
        assert got.delta == pytest.approx(100 * (short.detractors / short.n - p0))
    else:
        assert got.p_value is None


def test_detractor_spike_alpha_is_a_parameter() -> None:
    short = NpsCounts(200, 90, 64, 46)  # p ~= 0.03
    assert not detractor_spike(short, BASE_18, min_sample=30).fires
    assert detractor_spike(short, BASE_18, alpha=0.05, min_sample=30).fires
    with pytest.raises(ValueError):
        detractor_spike(short, BASE_18, alpha=0.3, min_sample=30)  # alpha > clear_p


# -- churn_spike -------------------------------------------------------------------------------

CHURN_ROWS: list[tuple[str, int, float, int, float, bool, bool]] = [
    # id, short count, short exposure, baseline count, baseline exposure, fires, clear
    ("12-vs-2.4-expected", 12, HOUR_S, 400, WEEK_S, True, False),
    ("3-vs-2.4-expected", 3, HOUR_S, 400, WEEK_S, False, True),
    ("7-vs-2.4-band", 7, HOUR_S, 400, WEEK_S, False, False),
    ("baseline-29", 50, HOUR_S, 29, WEEK_S, False, False),
    ("two-below-min-short-count", 2, HOUR_S, 30, 30 * 86400.0, False, False),
    ("none-and-no-baseline", 0, HOUR_S, 0, WEEK_S, False, True),
    ("customer-seconds", 12, 1200 * HOUR_S, 400, 1000 * WEEK_S, True, False),
    ("grown-base-is-no-spike", 12, 5000 * HOUR_S, 400, 1000 * WEEK_S, False, True),
]


@pytest.mark.parametrize(
    ("short", "short_exp", "base", "base_exp", "fires", "clear"),
    [row[1:] for row in CHURN_ROWS],
    ids=[row[0] for row in CHURN_ROWS],
)
def test_churn_spike_table(
    short: int, short_exp: float, base: int, base_exp: float, fires: bool, clear: bool
) -> None:
    got = churn_spike(short, short_exp, base, base_exp)
    assert (got.fires, got.clear) == (fires, clear)
    assert got.test == "poisson_exact"
    if base >= 30:
        mu = base / base_exp * short_exp
        assert got.p_value == pytest.approx(poisson.sf(short - 1, mu), rel=REL)
        assert got.delta == pytest.approx(short - mu)
    else:
        assert got.p_value is None


def test_churn_spike_min_short_count_is_the_only_block() -> None:
    # mu = 30 / 720 h: two cancellations in an hour are p ~ 8.5e-4, yet below min_short_count
    got = churn_spike(2, HOUR_S, 30, 30 * 86400.0)
    assert got.p_value is not None and got.p_value < 0.01 and not got.fires
    assert churn_spike(2, HOUR_S, 30, 30 * 86400.0, min_short_count=2).fires


@pytest.mark.parametrize(
    "args", [(-1, HOUR_S, 40, WEEK_S), (1, -HOUR_S, 40, WEEK_S), (1, HOUR_S, 40, math.nan)]
)
def test_churn_spike_rejects_bad_input(args: tuple[int, float, int, float]) -> None:
    with pytest.raises(ValueError):
        churn_spike(*args)


# -- slo_breach --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p90", "n", "fires", "clear"),
    [
        (4000.0, 100, True, False),
        (3600.0, 100, False, False),  # at the SLO: not above it, not clearly below
        (3500.0, 100, False, False),
        (3240.0, 100, False, True),  # 0.9·SLO
        (60.0, 100, False, True),
        (1e6, 29, False, False),  # below min_sample, however slow
        (None, 0, False, True),  # no tickets at all
    ],
)
def test_slo_breach_table(p90: float | None, n: int, fires: bool, clear: bool) -> None:
    got = slo_breach(p90, n, slo_s=3600.0, min_sample=30)
    assert (got.fires, got.clear, got.test) == (fires, clear, "p90_threshold")
    if p90 is not None and n >= 30:
        assert (got.statistic, got.delta, got.p_value) == (p90, p90 - 3600.0, None)


# -- episodes ----------------------------------------------------------------------------------

F = TestResult(True, False, None, None, None, "t")  # fires
H = TestResult(False, False, None, None, None, "t")  # in the hysteresis band: neither
C = TestResult(False, True, None, None, None, "t")  # clearly back

MIN = 60_000


def run(
    inputs: list[tuple[int, TestResult]], *, cooldown_ms: int = 30 * MIN, min_firing_ms: int = 0
) -> list[tuple[int, str]]:
    state, out = EpisodeState(), []
    for now, result in inputs:
        state, change = step(
            state, result, now, cooldown_ms=cooldown_ms, min_firing_ms=min_firing_ms,
            new_id=episode_id("nps_drop", "1h", "all", "all", now),
        )  # fmt: skip
        if change is not None:
            out.append((now, change))
    return out


EPISODE_ROWS: list[tuple[str, list[tuple[int, TestResult]], list[tuple[int, str]]]] = [
    ("quiet", [(0, H), (MIN, C), (2 * MIN, H)], []),
    ("flapping-is-one-episode",
     [(0, F), (MIN, H), (2 * MIN, F), (3 * MIN, H), (4 * MIN, F), (5 * MIN, H), (6 * MIN, C)],
     [(0, "firing"), (6 * MIN, "resolved")]),
    ("not-firing-is-not-clear", [(0, F), (MIN, H), (60 * MIN, H)], [(0, "firing")]),
    ("cooldown-suppresses-refire",
     [(0, F), (MIN, C), (2 * MIN, F), (30 * MIN, F), (31 * MIN, F), (32 * MIN, C)],
     [(0, "firing"), (MIN, "resolved"), (31 * MIN, "firing"), (32 * MIN, "resolved")]),
    ("clear-while-idle-is-nothing", [(0, C), (MIN, C)], []),
    ("refire-after-cooldown-new-episode",
     [(0, F), (5 * MIN, C), (40 * MIN, F), (41 * MIN, C)],
     [(0, "firing"), (5 * MIN, "resolved"), (40 * MIN, "firing"), (41 * MIN, "resolved")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [row[1:] for row in EPISODE_ROWS],
    ids=[row[0] for row in EPISODE_ROWS],
)
def test_episode_table(
    inputs: list[tuple[int, TestResult]], expected: list[tuple[int, str]]
) -> None:
    assert run(inputs) == expected


def test_min_firing_ms_holds_an_early_clear() -> None:
    inputs = [(0, F), (MIN, C), (5 * MIN, C), (10 * MIN, C)]
    assert run(inputs, min_firing_ms=10 * MIN) == [(0, "firing"), (10 * MIN, "resolved")]


def test_episode_ids_and_resolved_state() -> None:
    calls: list[int] = []

    def new_id() -> str:
        calls.append(1)
        return f"id-{len(calls)}"

    s0 = EpisodeState()
    s1, t1 = step(s0, F, 1000, cooldown_ms=0, new_id=new_id)
    s2, t2 = step(s1, F, 2000, cooldown_ms=0, new_id=new_id)
    s3, t3 = step(s2, C, 3000, cooldown_ms=0, new_id=new_id)
    assert (t1, t2, t3) == ("firing", None, "resolved")
    assert calls == [1]  # called once, when the episode opened
    assert s1 == EpisodeState(True, 1000, 1000, "id-1") == s2
    # the resolved state still names the episode that ended
    assert s3 == EpisodeState(False, 1000, 3000, "id-1")
    s4, t4 = step(s3, F, 4000, cooldown_ms=0, new_id="fixed")
    assert (t4, s4.alert_id) == ("firing", "fixed")
    assert episode_id("detractor_spike", "1h", "segment", "smb", 5) == (
        "detractor_spike|1h|segment=smb|5"
    )


@given(
    st.lists(
        st.tuples(st.integers(0, 20 * MIN), st.sampled_from([F, H, C])), min_size=1, max_size=60
    ),
    st.integers(0, 60 * MIN),
)
def test_episodes_alternate_and_respect_cooldown(
    steps: list[tuple[int, TestResult]], cooldown_ms: int
) -> None:
    state, now, out = EpisodeState(), 0, []
    for gap, result in steps:
        now += gap
        state, change = step(state, result, now, cooldown_ms=cooldown_ms, new_id=str(now))
        if change is not None:
            # opens only on fires, closes only on clear
            assert result is (F if change == "firing" else C)
            out.append((now, change))
    kinds = [kind for _, kind in out]
    assert kinds == ["firing", "resolved"] * (len(kinds) // 2) + ["firing"] * (len(kinds) % 2)
    for (t_res, _), (t_fire, _) in zip(out[1::2], out[2::2], strict=False):
        assert t_fire - t_res >= cooldown_ms


def test_episode_state_round_trips_through_json() -> None:
    for state in (EpisodeState(), EpisodeState(True, 5, 7, "a|b"), EpisodeState(False, 5, 9, "x")):
        assert EpisodeState.from_list(json.loads(json.dumps(state.to_list()))) == state
    with pytest.raises(ValueError):
        EpisodeState.from_list([True, 1, 2])


# -- exclude, summary --------------------------------------------------------------------------


def test_exclude_subtracts_the_short_window() -> None:
    assert exclude(NpsCounts(100, 50, 30, 20), NpsCounts(10, 2, 3, 5)) == NpsCounts(90, 48, 27, 15)
    with pytest.raises(ValueError):
        exclude(NpsCounts(1, 1, 0, 0), NpsCounts(2, 0, 0, 2))


SUMMARY_ROWS: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
    (("detractor_spike", "detractor_share", "1h", "segment", "enterprise", Score(41.0, 212),
      Score(18.0, 5000), 1e-5), {"baseline_window": "7d"},
     "Detractors in segment=enterprise rose to 41% over the last hour (n=212) against 18% over "
     "the previous 7 days (p<0.001)"),
    (("nps_drop", "nps", "1h", "all", "all", Score(21.333, 88), Score(38.5, 4000), 0.0123),
     {"baseline_window": "7d"},
     "NPS overall fell to 21.3 over the last hour (n=88) against 38.5 over the previous 7 days "
     "(p=0.012)"),
    (("nps_drop", "nps", "1h", "all", "all", Score(35.0, 88), Score(38.5, 4000), None),
     {"baseline_window": "7d", "state": "resolved"},
     "NPS overall is back to 35 over the last hour (n=88) against 38.5 over the previous 7 days"),
    (("ces_drop", "ces", "5m", "segment+channel", "smb+chat", Score(4.123, 40), Score(5.5, 900),
      0.002), {"baseline_window": "30d"},
     "CES in segment+channel=smb+chat fell to 4.12 over the last 5 minutes (n=40) against 5.50 "
     "over the previous 30 days (p=0.002)"),
    (("churn_spike", "cancellations", "1h", "segment", "smb", Score(12.0, 12), Score(2.38, 400),
      7.8e-6), {"baseline_window": "7d"},
     "Cancellations in segment=smb rose to 12 over the last hour against 2.4 expected from the "
     "previous 7 days (p<0.001)"),
    (("first_response_slo", "first_response_p90_s", "1h", "channel", "chat", Score(7560.0, 88),
      Score(3600.0, 0), None), {},
     "First-response p90 in channel=chat is 2.1h over the last hour (n=88) against an SLO of 1h"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "kwargs", "expected"), SUMMARY_ROWS)
def test_summary_sentences(args: tuple[Any, ...], kwargs: dict[str, Any], expected: str) -> None:
    assert summary(*args, **kwargs) == expected
