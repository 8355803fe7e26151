"""Table tests of the additive counts in streams.metrics.stats (folding, categories, buckets)."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.metrics.base import FlatCounts
from streams.metrics.histogram import OVERFLOW_INDEX
from streams.metrics.stats import (
    FAMILIES,
    CesCounts,
    ChurnCounts,
    CsatCounts,
    LatencyHistogram,
    NpsCounts,
    SupportCounts,
    bucket_bounds,
    bucket_index,
    bucket_point,
    category,
)

METRICS_DIR = Path(__file__).resolve().parents[2] / "streams" / "metrics"


def test_metrics_package_is_pure() -> None:
    # STYLE point 2 / design: no framework, exporter or clock imports in the core.
    forbidden = {"faust", "aiokafka", "prometheus_client", "time", "datetime", "mode"}
    files = sorted(METRICS_DIR.glob("*.py"))
    assert files
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{path.name} imports {roots & forbidden}"


# -- categories -------------------------------------------------------------------------------

# (survey, score, lo, hi, expected)
CATEGORY_TABLE = [
    # NPS: 0-6 detractor, 7-8 passive, 9-10 promoter (scale arguments ignored)
    ("nps", 0, 0, 10, "detractor"),
    ("nps", 6, 0, 10, "detractor"),
    ("nps", 7, 0, 10, "passive"),
    ("nps", 8, 0, 10, "passive"),
    ("nps", 9, 0, 10, "promoter"),
    ("nps", 10, 0, 10, "promoter"),
    # CSAT 1-5: top two boxes 4-5, bottom two 1-2, 3 neutral
    ("csat", 5, 1, 5, "satisfied"),
    ("csat", 4, 1, 5, "satisfied"),
    ("csat", 3, 1, 5, "neutral"),
    ("csat", 2, 1, 5, "dissatisfied"),
    ("csat", 1, 1, 5, "dissatisfied"),
    # CSAT 1-10: top two boxes 9-10, bottom two 1-2, 3..8 neutral
    ("csat", 10, 1, 10, "satisfied"),
    ("csat", 9, 1, 10, "satisfied"),
    ("csat", 8, 1, 10, "neutral"),
    ("csat", 3, 1, 10, "neutral"),
    ("csat", 2, 1, 10, "dissatisfied"),
    ("csat", 1, 1, 10, "dissatisfied"),
    # CSAT 0-10: top two 9-10, bottom two 0-1
    ("csat", 2, 0, 10, "neutral"),
    ("csat", 1, 0, 10, "dissatisfied"),
    # CES 1-7: x = score; easy 5-7, neutral 4, hard 1-3
    ("ces", 7, 1, 7, "easy"),
    ("ces", 5, 1, 7, "easy"),
    ("ces", 4, 1, 7, "neutral"),
    ("ces", 3, 1, 7, "hard"),
    ("ces", 1, 1, 7, "hard"),
    # CES 1-10: x = 1 + 6(s-1)/9 -> s=7: 5.0 easy, s=6: 4.33 neutral, s=5: 3.67 hard
    ("ces", 7, 1, 10, "easy"),
    ("ces", 6, 1, 10, "neutral"),
    ("ces", 5, 1, 10, "hard"),
    # CES 0-10: x = 1 + 0.6 s -> s=5: exactly 4.0 neutral (boundary), s=4: 3.4 hard,
    # s=7: 5.2 easy, s=6: 4.6 neutral
    ("ces", 7, 0, 10, "easy"),
    ("ces", 6, 0, 10, "neutral"),
    ("ces", 5, 0, 10, "neutral"),
    ("ces", 4, 0, 10, "hard"),
    # CES 1-5: x = 1 + 1.5(s-1) -> s=4: 5.5 easy, s=3: 4.0 neutral, s=2: 2.5 hard
    ("ces", 4, 1, 5, "easy"),
    ("ces", 3, 1, 5, "neutral"),
    ("ces", 2, 1, 5, "hard"),
]


@pytest.mark.parametrize(("survey", "score", "lo", "hi", "expected"), CATEGORY_TABLE)
def test_category(survey: str, score: int, lo: int, hi: int, expected: str) -> None:
    assert category(survey, score, lo, hi) == expected
    # add() files the answer under the same category
    if survey == "nps":
        nps = NpsCounts.empty()
        nps.add(score)
        assert nps.to_dict()[expected + "s"] == 1
    elif survey == "csat":
        csat = CsatCounts.empty()
        csat.add(score, lo, hi)
        assert csat.to_dict()[expected] == 1
    else:
        ces = CesCounts.empty()
        ces.add(score, lo, hi)
        assert ces.to_dict()[expected] == 1


def test_category_unknown_survey() -> None:
    with pytest.raises(ValueError, match="unknown survey"):
        category("xyz", 3, 1, 5)


# -- folding ----------------------------------------------------------------------------------


def test_nps_fold() -> None:
    c = NpsCounts.empty()
    for s in [10, 9, 8, 7, 6, 0, 10]:
        c.add(s)
    # promoters 10, 9, 10; passives 8, 7; detractors 6, 0
    assert c.to_dict() == {"n": 7, "promoters": 3, "passives": 2, "detractors": 2}
    assert c.to_list() == [7, 3, 2, 2]


# (answers as (score, lo, hi), expected to_dict); totals are the scores rescaled to 1..5
CSAT_FOLD_TABLE = [
    ([], {"n": 0, "satisfied": 0, "neutral": 0, "dissatisfied": 0, "total": 0.0, "total_sq": 0.0}),
    # default scale: the integer itself: 5 + 3 + 1 = 9, 25 + 9 + 1 = 35
    (
        [(5, 1, 5), (3, 1, 5), (1, 1, 5)],
        {"n": 3, "satisfied": 1, "neutral": 1, "dissatisfied": 1, "total": 9.0, "total_sq": 35.0},
    ),
    # 1..10 scale: x = 1 + 4(s-1)/9: s=10 -> 5, s=1 -> 1, s=4 -> 1 + 12/9 = 7/3
    # total = 5 + 1 + 7/3 = 25/3; total_sq = 25 + 1 + 49/9 = 283/9
    (
        [(10, 1, 10), (1, 1, 10), (4, 1, 10)],
        {
            "n": 3,
            "satisfied": 1,
            "neutral": 1,
            "dissatisfied": 1,
            "total": 25 / 3,
            "total_sq": 283 / 9,
        },
    ),
    # 0..10 scale: x = 1 + 0.4 s: s=0 -> 1, s=5 -> 3, s=10 -> 5
    (
        [(0, 0, 10), (5, 0, 10), (10, 0, 10)],
        {"n": 3, "satisfied": 1, "neutral": 1, "dissatisfied": 1, "total": 9.0, "total_sq": 35.0},
    ),
]


@pytest.mark.parametrize(("answers", "expected"), CSAT_FOLD_TABLE)
def test_csat_fold(answers: list[tuple[int, int, int]], expected: dict[str, float]) -> None:
    c = CsatCounts.empty()
    for score, lo, hi in answers:
        c.add(score, lo, hi)
    got = c.to_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


# (answers, expected to_dict); totals rescaled to 1..7
CES_FOLD_TABLE = [
    ([], {"n": 0, "easy": 0, "neutral": 0, "hard": 0, "total": 0.0, "total_sq": 0.0}),
    # default: 7 + 4 + 2 = 13; 49 + 16 + 4 = 69
    (
        [(7, 1, 7), (4, 1, 7), (2, 1, 7)],
        {"n": 3, "easy": 1, "neutral": 1, "hard": 1, "total": 13.0, "total_sq": 69.0},
    ),
    # 1..5: x = 1 + 1.5(s-1): s=5 -> 7, s=3 -> 4, s=1 -> 1; total 12, total_sq 49+16+1 = 66
    (
        [(5, 1, 5), (3, 1, 5), (1, 1, 5)],
        {"n": 3, "easy": 1, "neutral": 1, "hard": 1, "total": 12.0, "total_sq": 66.0},
    ),
]


@pytest.mark.parametrize(("answers", "expected"), CES_FOLD_TABLE)
def test_ces_fold(answers: list[tuple[int, int, int]], expected: dict[str, float]) -> None:
    c = CesCounts.empty()
    for score, lo, hi in answers:
        c.add(score, lo, hi)
    got = c.to_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_default_scale_totals_are_exact_integers() -> None:
    c = CsatCounts.empty()
    e = CesCounts.empty()
    for _ in range(1000):
        c.add(3)
        e.add(6)
    assert c.total == 3000.0 and c.total_sq == 9000.0
    assert e.total == 6000.0 and e.total_sq == 36000.0


def test_churn_fold() -> None:
    c = ChurnCounts.empty()
    c.add(120.5)
    c.add(0.0)
    c.add()
    assert c.to_dict() == {"cancellations": 3, "lost_mrr": 120.5}


def test_support_fold() -> None:
    c = SupportCounts.empty()
    c.add_opened()
    c.add_opened()
    c.add_responded(30.0)
    c.add_responded(None)  # counted as responded, latency unknown
    c.add_resolved(3600.0)
    c.add_reopened()
    assert c.to_dict() == {
        "opened": 2,
        "responded": 2,
        "resolved": 1,
        "reopened": 1,
        "first_response_n": 1,
        "resolution_n": 1,
    }
    assert c.first_response.buckets == {bucket_index(30.0): 1}
    assert c.resolution.buckets == {bucket_index(3600.0): 1}


# -- histogram buckets ------------------------------------------------------------------------

# (seconds, bucket index); regular bucket i covers [0.1*10^((i-1)/20), 0.1*10^(i/20))
BUCKET_TABLE = [
    (-5.0, 0),  # negative clamps to 0 -> underflow
    (math.nan, 0),
    (0.0, 0),
    (0.0999999, 0),
    (0.1, 1),  # exactly on the lowest edge -> first regular bucket
    (1.0, 21),  # 10^0 is edge 20 -> bucket 21
    (10.0, 41),
    # 60 s: 20*log10(60/0.1) = 55.56 -> edge 55 below it -> bucket 56 = [56.23, 63.10)
    (60.0, 56),
    (99_999_999.99, 180),
    (1e8, 181),  # overflow
    (1e12, 181),
    (math.inf, 181),
]


@pytest.mark.parametrize(("seconds", "idx"), BUCKET_TABLE)
def test_bucket_index(seconds: float, idx: int) -> None:
    assert bucket_index(seconds) == idx
    low, high = bucket_bounds(idx)
    clamped = seconds if seconds >= 0 else 0.0
    if not math.isnan(seconds):
        assert low <= clamped < high or (idx == 181 and clamped == math.inf)


def test_bucket_bounds_are_contiguous_and_log_spaced() -> None:
    assert bucket_bounds(0) == (0.0, 0.1)
    assert bucket_bounds(181) == (1e8, math.inf)
    for i in range(181):
        assert bucket_bounds(i)[1] == bucket_bounds(i + 1)[0]
        assert bucket_index(bucket_bounds(i + 1)[0]) == i + 1
    for i in range(1, 181):
        low, high = bucket_bounds(i)
        assert high / low == pytest.approx(10 ** (1 / 20), rel=1e-12)
    for bad in (-1, 182):
        with pytest.raises(ValueError):
            bucket_bounds(bad)


# (bucket index, representative point)
POINT_TABLE = [
    (0, 0.05),  # underflow: arithmetic midpoint of [0, 0.1)
    (21, 10**0.025),  # geometric midpoint of [1, 10^0.05)
    (37, 10**0.825),  # [10^0.8, 10^0.85): holds 7 s
    (181, 1e8),  # overflow: its lower edge
]


@pytest.mark.parametrize(("idx", "point"), POINT_TABLE)
def test_bucket_point(idx: int, point: float) -> None:
    assert bucket_point(idx) == pytest.approx(point, rel=1e-12)
    low, high = bucket_bounds(idx)
    assert low <= bucket_point(idx) < high


# -- serialisation, merge, equality -----------------------------------------------------------


def _support_example() -> SupportCounts:
    c = SupportCounts.empty()
    c.add_opened()
    c.add_responded(12.0)
    c.add_responded(0.01)
    c.add_resolved(86_400.0)
    c.add_reopened()
    return c


# (counts object, expected to_list)
ROUND_TRIP_TABLE: list[tuple[Any, list[Any]]] = [
    (NpsCounts.empty(), [0, 0, 0, 0]),
    (NpsCounts(10, 5, 3, 2), [10, 5, 3, 2]),
    (CsatCounts(3, 1, 1, 1, 25 / 3, 283 / 9), [3, 1, 1, 1, 25 / 3, 283 / 9]),
    (CesCounts(2, 1, 0, 1, 9.0, 53.0), [2, 1, 0, 1, 9.0, 53.0]),
    (ChurnCounts(2, 99.9), [2, 99.9]),
    (LatencyHistogram({41: 2, 0: 1}), [0, 1, 41, 2]),
    (SupportCounts.empty(), [0, 0, 0, 0, [], []]),
    (
        _support_example(),
        [1, 2, 1, 1, [0, 1, bucket_index(12.0), 1], [bucket_index(86_400.0), 1]],
    ),
]


@pytest.mark.parametrize(("counts", "as_list"), ROUND_TRIP_TABLE)
def test_to_list_from_list_round_trip(counts: Any, as_list: list[Any]) -> None:
    assert counts.to_list() == as_list
    cls = type(counts)
    assert cls.from_list(counts.to_list()) == counts
    # through JSON, as in the changelog
    assert cls.from_list(json.loads(json.dumps(counts.to_list()))) == counts


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (NpsCounts, [1, 2, 3]),
        (ChurnCounts, [1]),
        (SupportCounts, [0, 0, 0, 0, []]),
        (LatencyHistogram, [[182, 1]]),
        (LatencyHistogram, [[-1, 1]]),
        (LatencyHistogram, [[3, -1]]),
        (LatencyHistogram, [182, 1]),
        (LatencyHistogram, [3, -1]),
        (LatencyHistogram, [3, 1, 4]),
    ],
)
def test_from_list_rejects_bad_layout(cls: Any, data: list[Any]) -> None:
    with pytest.raises(ValueError):
        cls.from_list(data)


def test_histogram_from_list_drops_zero_buckets() -> None:
    assert LatencyHistogram.from_list([3, 0, 4, 2]) == LatencyHistogram({4: 2})
    assert LatencyHistogram.from_list([[3, 0], [4, 2]]) == LatencyHistogram({4: 2})
    assert LatencyHistogram({3: 0}) == LatencyHistogram.empty()


def test_histogram_and_support_counts_read_the_pair_form_written_before() -> None:
    # Changelogs and partials written before 2026-12-02 hold [[idx, n], ...].
    h = LatencyHistogram({0: 1, 41: 2})
    assert LatencyHistogram.from_list([[0, 1], [41, 2]]) == h
    old = [1, 2, 1, 1, [[0, 1], [bucket_index(12.0), 1]], [[bucket_index(86_400.0), 1]]]
    assert SupportCounts.from_list(old) == _support_example()
    mixed = SupportCounts.from_list(old).merge(
        SupportCounts.from_list(_support_example().to_list())
    )
    assert mixed.first_response.count == 4 and mixed.resolution.count == 2


# two changelog values per family, to merge
MERGE_PAIRS: dict[type, tuple[list[Any], list[Any]]] = {
    NpsCounts: ([3, 1, 1, 1], [2, 2, 0, 0]),
    CsatCounts: ([2, 1, 1, 0, 8.0, 34.0], [1, 0, 0, 1, 1.0, 1.0]),
    CesCounts: ([1, 1, 0, 0, 7.0, 49.0], [1, 0, 0, 1, 2.0, 4.0]),
    ChurnCounts: ([1, 10.0], [2, 5.5]),
    SupportCounts: ([1, 1, 0, 0, [3, 1], []], [2, 0, 1, 1, [3, 2, 9, 1], [50, 1]]),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_merge_returns_new_object_and_iadd_mutates(family: str) -> None:
    cls = FAMILIES[family]
    a = cls.from_list(MERGE_PAIRS[cls][0])
    b = cls.from_list(MERGE_PAIRS[cls][1])
    a_before, b_before = a.to_list(), b.to_list()
    merged = a.merge(b)  # type: ignore[arg-type]
    assert merged is not a and merged is not b
    assert a.to_list() == a_before and b.to_list() == b_before
    a.iadd(b)  # type: ignore[arg-type]
    assert a == merged
    assert b.to_list() == b_before


@pytest.mark.parametrize("cls", list(FAMILIES.values()) + [LatencyHistogram])
def test_empty_is_empty_and_not_equal_to_other_types(cls: Any) -> None:
    e = cls.empty()
    assert e.is_empty()
    assert e == cls.empty()
    assert e != 0
    assert all(e != other.empty() for other in FAMILIES.values() if other is not cls)


def test_non_empty_is_not_empty() -> None:
    assert not NpsCounts(1, 1, 0, 0).is_empty()
    assert not ChurnCounts(0, 1.0).is_empty()
    assert not _support_example().is_empty()
    assert not LatencyHistogram({0: 1}).is_empty()


def test_families_table() -> None:
    assert list(FAMILIES.items()) == [
        ("nps", NpsCounts),
        ("csat", CsatCounts),
        ("ces", CesCounts),
        ("churn", ChurnCounts),
        ("support", SupportCounts),
    ]


def test_histogram_to_dict_and_support_to_dict_hide_buckets() -> None:
    assert LatencyHistogram({1: 2}).to_dict() == {"n": 2}
    assert set(_support_example().to_dict()) == {
        "opened",
        "responded",
        "resolved",
        "reopened",
        "first_response_n",
        "resolution_n",
    }


def _parse_reference(cls: Any, data: list[Any]) -> Any:
    """``FlatCounts.from_list`` as it was before 2026-12-03: a default instance, then one
    ``setattr`` per field."""
    if len(data) != len(cls._FIELDS):
        raise ValueError("layout")
    obj = cls()
    for (name, typ), value in zip(cls._FIELDS, data, strict=True):
        setattr(obj, name, typ(value))
    return obj


_SCALAR = st.one_of(st.integers(-3, 10**12), st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([NpsCounts, CsatCounts, CesCounts, ChurnCounts]),
    st.lists(_SCALAR, min_size=1, max_size=7),
)
def test_flat_from_list_is_the_reference_parse(cls: Any, data: list[Any]) -> None:
    try:
        want = _parse_reference(cls, data)
    except ValueError:
        with pytest.raises(ValueError):
            cls.from_list(data)
        return
    got = cls.from_list(data)
    assert got.to_list() == want.to_list()
    assert [type(x) for x in got.to_list()] == [type(x) for x in want.to_list()]


_HIST_ENTRY = st.one_of(
    st.integers(-2, OVERFLOW_INDEX + 2),
    st.integers(-1, 3),
    st.booleans(),
    st.floats(0, 5, allow_nan=False),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_HIST_ENTRY, max_size=12))
def test_histogram_fast_parse_is_the_general_one(data: list[Any]) -> None:
    """``from_list`` skips the per-entry loop for what ``to_list`` writes; on everything else
    it must answer (or refuse) as the general parse does."""
    try:
        want = LatencyHistogram._parse(data)
    except ValueError:
        with pytest.raises(ValueError):
            LatencyHistogram.from_list(data)
        return
    got = LatencyHistogram.from_list(data)
    assert got.buckets == want.buckets and got.count == want.count
    assert LatencyHistogram.from_list(got.to_list()) == got


def test_flat_counts_init_must_take_the_fields_in_order() -> None:
    with pytest.raises(TypeError, match="in order"):

        class Swapped(FlatCounts):
            __slots__ = ("a", "b")
            _FIELDS = (("a", int), ("b", int))

            def __init__(self, b: int = 0, a: int = 0) -> None:
                self.a, self.b = a, b
