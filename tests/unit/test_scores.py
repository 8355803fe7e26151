"""Table tests of streams.metrics.scores: one parametrize table per score, worked by hand.

Every interval is also checked against an independent restatement of its formula written out
here (a different algebraic form for Wilson), and Wilson against scipy as a sanity check.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from scipy.stats import binomtest

from streams.metrics.scores import (
    Score,
    ces,
    ces_easy_share,
    churn_rate,
    csat,
    csat_mean,
    detractor_share,
    family_scores,
    nps,
    quantile,
    rate,
    retention_rate,
)
from streams.metrics.stats import (
    CesCounts,
    ChurnCounts,
    CsatCounts,
    LatencyHistogram,
    NpsCounts,
    SupportCounts,
    bucket_bounds,
    bucket_index,
)

Z = 1.96
TOL = 1e-9


def wilson_alt(k: int, n: int) -> tuple[float, float]:
    """Wilson interval in the (k + z²/2)/(n + z²) form, independent of the module's algebra."""
    p = k / n
    center = (k + Z * Z / 2) / (n + Z * Z)
    half = Z * math.sqrt(n) / (n + Z * Z) * math.sqrt(p * (1 - p) + Z * Z / (4 * n))
    return (max(0.0, center - half), min(1.0, center + half))


def assert_score(got: Score, value: float | None, n: int, ci: tuple[float, float] | None) -> None:
    assert got.n == n
    if value is None:
        assert got.value is None
        assert got.ci95_low is None and got.ci95_high is None
        return
    assert got.value == pytest.approx(value, abs=TOL)
    if ci is None:
        assert got.ci95_low is None and got.ci95_high is None
    else:
        assert got.ci95_low == pytest.approx(ci[0], abs=TOL)
        assert got.ci95_high == pytest.approx(ci[1], abs=TOL)


# -- NPS ----------------------------------------------------------------------------------------

# (promoters, passives, detractors, min_sample, expected NPS, hand-computed CI or None)
NPS_TABLE = [
    # empty and below min_sample: value null, n reported
    (0, 0, 0, 30, None, None),
    (0, 0, 0, 0, None, None),  # n = 0 is undefined even with min_sample 0
    (10, 5, 14, 30, None, None),  # n = 29 < 30
    # 50/20/30: p=.5 d=.3, NPS = 20; p+d-(p-d)^2 = .8 - .04 = .76;
    # SE = 100*sqrt(.76/100) = 8.717797887; 1.96*SE = 17.086883859 -> [2.913116141, 37.086883859]
    (50, 20, 30, 30, 20.0, (2.913116141, 37.086883859)),
    # exactly min_sample: 15/0/15 -> NPS 0; p+d-(0)^2 = 1 -> SE = 100*sqrt(1/30) = 18.257418584;
    # 1.96*SE = 35.784540425
    (15, 0, 15, 30, 0.0, (-35.784540425, 35.784540425)),
    # all promoters: SE 0 -> [100, 100]
    (40, 0, 0, 30, 100.0, (100.0, 100.0)),
    (0, 0, 40, 30, -100.0, (-100.0, -100.0)),
    # 29/0/1: NPS = 93.333; p+d = 1, (p-d)^2 = (28/30)^2 = .871111 -> SE = 6.554613868;
    # 93.333 + 12.847 = 106.18 -> clipped to 100; low 80.486290151
    (29, 0, 1, 30, 280 / 3, (80.486290151, 100.0)),
]


@pytest.mark.parametrize(("p", "pa", "d", "min_sample", "value", "ci"), NPS_TABLE)
def test_nps(
    p: int, pa: int, d: int, min_sample: int, value: float | None, ci: tuple[float, float] | None
) -> None:
    n = p + pa + d
    got = nps(NpsCounts(n, p, pa, d), min_sample)
    assert got.n == n
    if value is None:
        assert got == Score(None, n)
        return
    # the hand-computed numbers (rounded to 9 decimals above)
    assert got.value == pytest.approx(value, abs=TOL)
    assert ci is not None
    assert got.ci95_low == pytest.approx(ci[0], abs=1e-8)
    assert got.ci95_high == pytest.approx(ci[1], abs=1e-8)
    # SPEC §3 written out independently
    ps, ds = p / n, d / n
    se = 100 * math.sqrt((ps + ds - (ps - ds) ** 2) / n)
    assert got.ci95_low == pytest.approx(max(-100.0, value - 1.96 * se), abs=TOL)
    assert got.ci95_high == pytest.approx(min(100.0, value + 1.96 * se), abs=TOL)


# -- shares (Wilson) ----------------------------------------------------------------------------

# (k, n, min_sample, expected percent, hand-computed CI percent or None)
# Wilson 30/100: center = (30 + 1.9208)/103.8416 = .307399; half = .088451 -> [21.8948, 39.5850]
SHARE_TABLE = [
    (0, 0, 30, None, None),
    (5, 20, 30, None, None),
    (30, 100, 30, 30.0, (21.894753866, 39.585038432)),
    (5, 100, 30, 5.0, (2.154336146, 11.175196527)),
    # p = 0 keeps a non-zero upper bound: z²/(n + z²) = 3.8416/33.8416 = 11.3517 %
    (0, 30, 30, 0.0, (0.0, 11.351709139)),
    (30, 30, 30, 100.0, (88.648290861, 100.0)),
]


@pytest.mark.parametrize(("k", "n", "min_sample", "value", "ci"), SHARE_TABLE)
def test_detractor_share(
    k: int, n: int, min_sample: int, value: float | None, ci: tuple[float, float] | None
) -> None:
    got = detractor_share(NpsCounts(n, n - k, 0, k), min_sample)
    assert_score(got, value, n, ci)
    if value is not None:
        low, high = wilson_alt(k, n)
        assert got.ci95_low == pytest.approx(100 * low, abs=TOL)
        assert got.ci95_high == pytest.approx(100 * high, abs=TOL)
        # scipy uses z = 1.959964 (not 1.96): agree to ~1e-3 percent points
        sp = binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert got.ci95_low == pytest.approx(100 * sp.low, abs=1e-3)
        assert got.ci95_high == pytest.approx(100 * sp.high, abs=1e-3)


@pytest.mark.parametrize(("k", "n", "min_sample", "value", "ci"), SHARE_TABLE)
def test_csat(
    k: int, n: int, min_sample: int, value: float | None, ci: tuple[float, float] | None
) -> None:
    # k satisfied, the rest dissatisfied; totals do not matter for top-2-box CSAT
    assert_score(csat(CsatCounts(n, k, 0, n - k, 0.0, 0.0), min_sample), value, n, ci)


@pytest.mark.parametrize(("k", "n", "min_sample", "value", "ci"), SHARE_TABLE)
def test_ces_easy_share(
    k: int, n: int, min_sample: int, value: float | None, ci: tuple[float, float] | None
) -> None:
    assert_score(ces_easy_share(CesCounts(n, k, n - k, 0, 0.0, 0.0), min_sample), value, n, ci)


def test_csat_custom_scale_end_to_end() -> None:
    # 40 answers on 1..10: 20 x 10 (satisfied), 10 x 9 (satisfied), 10 x 5 (neutral)
    # CSAT = 100 * 30/40 = 75; mean on 1..5: 10 -> 5, 9 -> 1 + 32/9 = 41/9, 5 -> 1 + 16/9 = 25/9
    # mean = (20*5 + 10*41/9 + 10*25/9)/40 = (100 + 660/9)/40 = 4.333333
    c = CsatCounts.empty()
    for s in [10] * 20 + [9] * 10 + [5] * 10:
        c.add(s, 1, 10)
    assert csat(c, 30).value == pytest.approx(75.0, abs=TOL)
    assert csat_mean(c, 30).value == pytest.approx((100 + 660 / 9) / 40, abs=TOL)


# -- means -------------------------------------------------------------------------------------


def _csat_of(scores: list[float]) -> CsatCounts:
    return CsatCounts(len(scores), 0, 0, 0, sum(scores), sum(x * x for x in scores))


def _ces_of(scores: list[float]) -> CesCounts:
    return CesCounts(len(scores), 0, 0, 0, sum(scores), sum(x * x for x in scores))


# (answers on the default scale, min_sample, expected mean, hand-computed CI or None)
CSAT_MEAN_TABLE: list[tuple[list[float], int, float | None, tuple[float, float] | None]] = [
    ([], 30, None, None),
    ([4.0] * 29, 30, None, None),
    # 10 x 5, 10 x 4, 10 x 3: mean 4; squared deviations 10 + 0 + 10 = 20; s = sqrt(20/29)
    # = .830454799; half = 1.96*s/sqrt(30) = .297174433 -> [3.702825567, 4.297174433]
    ([5.0] * 10 + [4.0] * 10 + [3.0] * 10, 30, 4.0, (3.702825567, 4.297174433)),
    # all equal: s = 0 -> degenerate interval (variance guard keeps it >= 0)
    ([5.0] * 30, 30, 5.0, (5.0, 5.0)),
    # 29 x 5 + 1 x 4: mean 4.966667; s = sqrt((29*(1/30)^2 + (29/30)^2)/29) = .182574186;
    # half = .065333 -> upper 5.032 clipped to the scale maximum 5
    ([5.0] * 29 + [4.0], 30, 149 / 30, (149 / 30 - 0.065333333, 5.0)),
    # n = 1 with min_sample 1: a value, but no sample sd -> no interval
    ([3.0], 1, 3.0, None),
]


@pytest.mark.parametrize(("answers", "min_sample", "value", "ci"), CSAT_MEAN_TABLE)
def test_csat_mean(
    answers: list[float], min_sample: int, value: float | None, ci: tuple[float, float] | None
) -> None:
    got = csat_mean(_csat_of(answers), min_sample)
    n = len(answers)
    assert got.n == n
    if value is None:
        assert got == Score(None, n)
        return
    assert got.value == pytest.approx(value, abs=TOL)
    if ci is None:
        assert got.ci95_low is None and got.ci95_high is None
        return
    assert got.ci95_low == pytest.approx(ci[0], abs=1e-8)
    assert got.ci95_high == pytest.approx(ci[1], abs=1e-8)
    # independently: two-pass sample variance
    mean = sum(answers) / n
    s = math.sqrt(sum((x - mean) ** 2 for x in answers) / (n - 1))
    half = 1.96 * s / math.sqrt(n)
    assert got.ci95_low == pytest.approx(max(1.0, mean - half), abs=TOL)
    assert got.ci95_high == pytest.approx(min(5.0, mean + half), abs=TOL)


def test_mean_variance_guard_on_inexact_totals() -> None:
    # 7/3 (CSAT 4 on 1..10) repeated: total_sq - total²/n may round slightly below 0
    c = CsatCounts.empty()
    for _ in range(1000):
        c.add(4, 1, 10)
    got = csat_mean(c, 30)
    assert got.value == pytest.approx(7 / 3, abs=TOL)
    assert got.ci95_low == pytest.approx(7 / 3, abs=1e-6)
    assert got.ci95_high == pytest.approx(7 / 3, abs=1e-6)


# (answers on the default 1..7 scale, min_sample, mean, CI)
CES_TABLE: list[tuple[list[float], int, float | None, tuple[float, float] | None]] = [
    ([], 30, None, None),
    ([7.0] * 10, 30, None, None),
    # 15 x 7, 15 x 1: mean 4; s = sqrt(30*9/29) = 3.051285766; half = 1.96*s/sqrt(30)
    # = 1.091888588 -> [2.908111412, 5.091888588]
    ([7.0] * 15 + [1.0] * 15, 30, 4.0, (4 - 1.091888588, 4 + 1.091888588)),
    # 30 x 1: mean 1, s = 0 -> [1, 1]
    ([1.0] * 30, 30, 1.0, (1.0, 1.0)),
]


@pytest.mark.parametrize(("answers", "min_sample", "value", "ci"), CES_TABLE)
def test_ces(
    answers: list[float], min_sample: int, value: float | None, ci: tuple[float, float] | None
) -> None:
    got = ces(_ces_of(answers), min_sample)
    assert got.n == len(answers)
    if value is None:
        assert got == Score(None, len(answers))
        return
    assert got.value == pytest.approx(value, abs=TOL)
    assert ci is not None
    assert got.ci95_low == pytest.approx(ci[0], abs=1e-8)
    assert got.ci95_high == pytest.approx(ci[1], abs=1e-8)


def test_ces_rescaling() -> None:
    # 1..5 answers rescaled to 1..7: 5 -> 7, 1 -> 1 (x = 1 + 1.5(s-1)): mean of 15 + 15 = 4
    c = CesCounts.empty()
    for s in [5] * 15 + [1] * 15:
        c.add(s, 1, 5)
    assert c.easy == 15 and c.hard == 15
    assert ces(c, 30).value == pytest.approx(4.0, abs=TOL)
    assert ces_easy_share(c, 30).value == pytest.approx(50.0, abs=TOL)


# -- rates -------------------------------------------------------------------------------------

# (num, den, min_sample, expected fraction, CI)
RATE_TABLE = [
    (0, 0, 0, None, None),
    (5, 20, 30, None, None),
    # 3/10 with min_sample 5: Wilson [.107789287, .603226780]
    (3, 10, 5, 0.3, (0.107789287, 0.603226780)),
    (30, 100, 30, 0.3, (0.218947539, 0.395850384)),
    # more resolved than opened in the window: reported, but no binomial interval
    (12, 10, 5, 1.2, None),
]


@pytest.mark.parametrize(("num", "den", "min_sample", "value", "ci"), RATE_TABLE)
def test_rate(
    num: int, den: int, min_sample: int, value: float | None, ci: tuple[float, float] | None
) -> None:
    got = rate(num, den, min_sample)
    if value is None:
        assert got == Score(None, den)
        return
    assert got.n == den
    assert got.value == pytest.approx(value, abs=TOL)
    if ci is None:
        assert got.ci95_low is None and got.ci95_high is None
    else:
        assert got.ci95_low == pytest.approx(ci[0], abs=1e-8)
        assert got.ci95_high == pytest.approx(ci[1], abs=1e-8)
        assert (got.ci95_low, got.ci95_high) == pytest.approx(wilson_alt(num, den), abs=TOL)


# (cancellations, active_now, min_sample, expected churn, expected n, CI)
CHURN_TABLE: list[tuple[int, int | None, int, float | None, int, tuple[float, float] | None]] = [
    (0, None, 30, None, 0, None),  # no customer base known
    (7, None, 30, None, 7, None),
    (2, 10, 30, None, 12, None),  # base 12 < 30
    (0, 0, 0, None, 0, None),  # base 0
    # base = 95 + 5 = 100 -> 0.05, Wilson 5/100 = [.021543361, .111751965]
    (5, 95, 30, 0.05, 100, (0.021543361, 0.111751965)),
    (0, 30, 30, 0.0, 30, (0.0, 0.113517091)),
]


@pytest.mark.parametrize(("canc", "active", "min_sample", "value", "n", "ci"), CHURN_TABLE)
def test_churn_and_retention(
    canc: int,
    active: int | None,
    min_sample: int,
    value: float | None,
    n: int,
    ci: tuple[float, float] | None,
) -> None:
    c = ChurnCounts(canc, 10.0 * canc)
    assert_score(churn_rate(c, active, min_sample), value, n, ci)
    mirrored = None if ci is None else (1 - ci[1], 1 - ci[0])
    assert_score(
        retention_rate(c, active, min_sample), None if value is None else 1 - value, n, mirrored
    )


# -- quantiles ---------------------------------------------------------------------------------


def _hist(values: list[float]) -> LatencyHistogram:
    h = LatencyHistogram.empty()
    for v in values:
        h.add(v)
    return h


# 50 x 1 s (bucket 21 = [1, 1.122)), 40 x 10 s (bucket 41), 10 x 100 s (bucket 61)
MIXED = [1.0] * 50 + [10.0] * 40 + [100.0] * 10
# ten values in ten distinct buckets: 1 s .. 10 s
TEN = [float(s) for s in range(1, 11)]

# (values, q, min_sample, expected bucket of the point, expected point or None)
QUANTILE_TABLE: list[tuple[list[float], float, int, int | None, float | None]] = [
    ([], 0.5, 30, None, None),
    ([1.0] * 29, 0.5, 30, None, None),
    ([], 0.5, 0, None, None),
    # rank ceil(.5*100) = 50 -> last of the 1 s values -> geometric midpoint 10^0.025
    (MIXED, 0.5, 30, 21, 10**0.025),
    (MIXED, 0.51, 30, 41, 10**1.025),  # rank 51 -> first 10 s value
    (MIXED, 0.9, 30, 41, 10**1.025),  # rank 90 -> last 10 s value
    (MIXED, 0.91, 30, 61, 10**2.025),  # rank 91
    (MIXED, 1.0, 30, 61, 10**2.025),
    (MIXED, 0.0, 30, 21, 10**0.025),  # rank clamps to 1
    # rank ceil(.7*10) must be 7 (not 8 from 7.000000000000001): 7 s in [10^.8, 10^.85)
    (TEN, 0.7, 5, bucket_index(7.0), 10**0.825),
    ([0.01] * 30, 0.9, 30, 0, 0.05),  # underflow bucket reports 0.05 s
    ([2e8] * 30, 0.5, 30, 181, 1e8),  # overflow reports its lower edge
]


@pytest.mark.parametrize(("values", "q", "min_sample", "bucket", "point"), QUANTILE_TABLE)
def test_quantile(
    values: list[float], q: float, min_sample: int, bucket: int | None, point: float | None
) -> None:
    got = quantile(_hist(values), q, min_sample)
    assert got.n == len(values)
    if point is None:
        assert got == Score(None, len(values))
        return
    assert bucket is not None and got.value is not None
    assert got.value == pytest.approx(point, rel=1e-12)
    low, high = bucket_bounds(bucket)
    assert low <= got.value < high
    # the exact nearest-rank order statistic lies in the same bucket
    exact = sorted(values)[max(1, math.ceil(round(q * len(values), 9))) - 1]
    assert bucket_index(exact) == bucket
    assert got.ci95_low is not None and got.ci95_high is not None
    assert got.ci95_low <= got.value <= got.ci95_high


def test_quantile_interval_spans_order_statistics() -> None:
    # n = 100, q = .5: ranks 50 -+ 1.96*5 -> floor(40.2) = 40 (1 s bucket) and
    # ceil(59.8) + 1 = 61 (10 s bucket): [1.0, 10^1.05)
    got = quantile(_hist(MIXED), 0.5, 30)
    assert got.ci95_low == pytest.approx(1.0, rel=1e-12)
    assert got.ci95_high == pytest.approx(10**1.05, rel=1e-12)
    # overflow bucket: the upper bound is its lower edge, never infinity
    top = quantile(_hist([2e8] * 30), 0.9, 30)
    assert top.ci95_high == 1e8


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_quantile_rejects_bad_q(q: float) -> None:
    with pytest.raises(ValueError):
        quantile(_hist(MIXED), q, 30)


# -- family_scores -----------------------------------------------------------------------------

# (family, empty counts, metric names in order)
FAMILY_TABLE: list[tuple[str, Any, list[str]]] = [
    ("nps", NpsCounts.empty(), ["nps", "detractor_share"]),
    ("csat", CsatCounts.empty(), ["csat", "csat_mean"]),
    ("ces", CesCounts.empty(), ["ces", "ces_easy_share"]),
    ("churn", ChurnCounts.empty(), ["cancellations", "lost_mrr", "churn_rate", "retention_rate"]),
    (
        "support",
        SupportCounts.empty(),
        [
            "ticket_volume",
            "first_response_p50_s",
            "first_response_p90_s",
            "resolution_p50_s",
            "resolution_p90_s",
            "resolution_rate",
            "reopen_rate",
        ],
    ),
]

NEVER_NULL = {"cancellations", "lost_mrr", "ticket_volume"}


@pytest.mark.parametrize(("family", "counts", "metrics"), FAMILY_TABLE)
def test_family_scores_on_empty_counts(family: str, counts: Any, metrics: list[str]) -> None:
    rows = family_scores(family, counts, 30)
    assert [m for m, _, _ in rows] == metrics
    assert [d for _, _, d in rows] == [f"{m}/v1" for m in metrics]
    for metric, score, _ in rows:
        if metric in NEVER_NULL:
            assert score == Score(0.0, 0)
        else:
            assert score.value is None and score.n == 0


def test_family_scores_match_the_functions() -> None:
    n = NpsCounts(100, 50, 20, 30)
    assert family_scores("nps", n, 30) == [
        ("nps", nps(n, 30), "nps/v1"),
        ("detractor_share", detractor_share(n, 30), "detractor_share/v1"),
    ]
    ch = ChurnCounts(5, 250.0)
    rows = dict((m, s) for m, s, _ in family_scores("churn", ch, 30, active_now=95))
    assert rows["cancellations"] == Score(5.0, 5)
    assert rows["lost_mrr"] == Score(250.0, 5)
    assert rows["churn_rate"] == churn_rate(ch, 95, 30)
    assert rows["retention_rate"] == retention_rate(ch, 95, 30)

    sup = SupportCounts.empty()
    for _ in range(40):
        sup.add_opened()
    for v in MIXED:
        sup.add_responded(v)
        sup.add_resolved(v * 10)
    for _ in range(10):
        sup.add_reopened()
    srows = dict((m, s) for m, s, _ in family_scores("support", sup, 30))
    assert srows["ticket_volume"] == Score(40.0, 40)
    assert srows["first_response_p50_s"] == quantile(sup.first_response, 0.5, 30)
    assert srows["first_response_p90_s"].value == pytest.approx(10**1.025)
    assert srows["resolution_p90_s"].value == pytest.approx(10**2.025)
    assert srows["resolution_rate"].value == pytest.approx(100 / 40)  # no CI: > 1
    assert srows["reopen_rate"] == rate(10, 100, 30)


def test_family_scores_rejects_unknown_family_and_wrong_counts() -> None:
    with pytest.raises(ValueError, match="unknown family"):
        family_scores("eval", NpsCounts.empty(), 30)
    with pytest.raises(TypeError):
        family_scores("nps", CsatCounts.empty(), 30)
