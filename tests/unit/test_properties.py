"""Hypothesis properties of every counts class: they form a commutative monoid under merge,
and folding commutes with merging (so any window, member or worker can be combined exactly).

Integer fields must match exactly; float sums (rescaled totals, lost MRR) are compared with
math.isclose because float addition is not associative.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.metrics.scores import Score, family_scores, quantile
from streams.metrics.stats import (
    CesCounts,
    ChurnCounts,
    CsatCounts,
    LatencyHistogram,
    NpsCounts,
    SupportCounts,
    bucket_bounds,
    bucket_index,
    category,
)
from tests.folding import fold_support

# -- event strategies and folds ----------------------------------------------------------------


def _answers(scales: list[tuple[int, int]]) -> st.SearchStrategy[tuple[int, int, int]]:
    return st.sampled_from(scales).flatmap(
        lambda s: st.tuples(st.integers(s[0], s[1]), st.just(s[0]), st.just(s[1]))
    )


_LATENCY = st.one_of(
    st.none(),
    st.floats(min_value=-10.0, max_value=1e10, allow_nan=False),
    st.sampled_from([0.0, 0.1, 1.0, 60.0, 1e8, math.inf]),
)
_SUPPORT_EVENT = st.one_of(
    st.tuples(st.just("opened"), st.none()),
    st.tuples(st.sampled_from(["responded", "resolved"]), _LATENCY),
    st.tuples(st.just("reopened"), st.none()),
)


def _fold_nps(events: list[int]) -> NpsCounts:
    c = NpsCounts.empty()
    for s in events:
        c.add(s)
    return c


def _fold_csat(events: list[tuple[int, int, int]]) -> CsatCounts:
    c = CsatCounts.empty()
    for s, lo, hi in events:
        c.add(s, lo, hi)
    return c


def _fold_ces(events: list[tuple[int, int, int]]) -> CesCounts:
    c = CesCounts.empty()
    for s, lo, hi in events:
        c.add(s, lo, hi)
    return c


def _fold_churn(events: list[float]) -> ChurnCounts:
    c = ChurnCounts.empty()
    for mrr in events:
        c.add(mrr)
    return c


def _fold_hist(events: list[float]) -> LatencyHistogram:
    h = LatencyHistogram.empty()
    for v in events:
        h.add(v)
    return h


def _hist_scores(h: LatencyHistogram, min_sample: int, active_now: int | None) -> list[Score]:
    return [quantile(h, q, min_sample) for q in (0.0, 0.5, 0.9, 0.99, 1.0)]


def _family(name: str) -> Callable[[Any, int, int | None], list[Score]]:
    def scores(c: Any, min_sample: int, active_now: int | None) -> list[Score]:
        return [s for _, s, _ in family_scores(name, c, min_sample, active_now)]

    return scores


@dataclass(frozen=True)
class Kind:
    name: str
    cls: Any
    event: st.SearchStrategy[Any]
    fold: Callable[[list[Any]], Any]
    scores: Callable[[Any, int, int | None], list[Score]]

    def __repr__(self) -> str:  # readable pytest ids
        return self.name


KINDS = [
    Kind("nps", NpsCounts, st.integers(0, 10), _fold_nps, _family("nps")),
    Kind(
        "csat",
        CsatCounts,
        _answers([(1, 5), (1, 10), (0, 10), (1, 7), (1, 3)]),
        _fold_csat,
        _family("csat"),
    ),
    Kind("ces", CesCounts, _answers([(1, 7), (1, 5), (1, 10), (0, 10)]), _fold_ces, _family("ces")),
    Kind(
        "churn",
        ChurnCounts,
        st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
        _fold_churn,
        _family("churn"),
    ),
    Kind("support", SupportCounts, _SUPPORT_EVENT, fold_support, _family("support")),
    Kind(
        "histogram",
        LatencyHistogram,
        st.floats(min_value=-1.0, max_value=1e10, allow_nan=False),
        _fold_hist,
        _hist_scores,
    ),
]
IDS = [k.name for k in KINDS]


# -- comparison helpers ------------------------------------------------------------------------


def close(a: Any, b: Any) -> bool:
    """Structural equality; ints exact, floats math.isclose (abs_tol for near-zero variance)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


def close_scores(a: list[Score], b: list[Score]) -> bool:
    return close(
        [(s.value, s.n, s.ci95_low, s.ci95_high) for s in a],
        [(s.value, s.n, s.ci95_low, s.ci95_high) for s in b],
    )


PROPS = settings(deadline=None, max_examples=60)


def _draw_counts(data: st.DataObject, kind: Kind, label: str) -> Any:
    return kind.fold(data.draw(st.lists(kind.event, max_size=40), label=label))


# -- monoid laws -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@PROPS
@given(data=st.data())
def test_merge_is_associative(kind: Kind, data: st.DataObject) -> None:
    a, b, c = (_draw_counts(data, kind, x) for x in "abc")
    left = a.merge(b).merge(c)
    right = a.merge(b.merge(c))
    assert close(left.to_list(), right.to_list())
    if kind.name in ("nps", "support", "histogram"):  # integer-only: exact
        assert left == right


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@PROPS
@given(data=st.data())
def test_empty_is_identity(kind: Kind, data: st.DataObject) -> None:
    a = _draw_counts(data, kind, "a")
    assert a.merge(kind.cls.empty()) == a
    assert kind.cls.empty().merge(a) == a
    assert kind.cls.empty().is_empty()
    b = a.copy()
    b.iadd(kind.cls.empty())
    assert b == a


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@PROPS
@given(data=st.data())
def test_merge_is_commutative_and_pure(kind: Kind, data: st.DataObject) -> None:
    a, b = _draw_counts(data, kind, "a"), _draw_counts(data, kind, "b")
    a_list, b_list = a.to_list(), b.to_list()
    ab = a.merge(b)
    assert ab == b.merge(a)
    assert a.to_list() == a_list and b.to_list() == b_list  # merge does not mutate
    a.iadd(b)
    assert a == ab  # iadd is the in-place merge
    assert b.to_list() == b_list


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@PROPS
@given(data=st.data())
def test_merge_of_folds_is_fold_of_concatenation(kind: Kind, data: st.DataObject) -> None:
    xs = data.draw(st.lists(kind.event, max_size=60), label="xs")
    ys = data.draw(st.lists(kind.event, max_size=60), label="ys")
    min_sample = data.draw(st.integers(0, 40), label="min_sample")
    active_now = data.draw(st.one_of(st.none(), st.integers(0, 100)), label="active_now")
    merged = kind.fold(xs).merge(kind.fold(ys))
    whole = kind.fold(xs + ys)
    assert close(merged.to_list(), whole.to_list())
    assert close_scores(
        kind.scores(merged, min_sample, active_now), kind.scores(whole, min_sample, active_now)
    )


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@PROPS
@given(data=st.data())
def test_to_list_round_trip(kind: Kind, data: st.DataObject) -> None:
    a = _draw_counts(data, kind, "a")
    assert kind.cls.from_list(a.to_list()) == a
    # as stored in the changelog: through JSON (floats round-trip exactly via repr)
    assert kind.cls.from_list(json.loads(json.dumps(a.to_list()))) == a
    assert all(isinstance(v, int | float) for v in a.to_dict().values())


# -- folding invariants ------------------------------------------------------------------------


@given(events=st.lists(_answers([(1, 5), (1, 10), (0, 10), (1, 3)]), max_size=50))
def test_csat_categories_partition_n(events: list[tuple[int, int, int]]) -> None:
    c = _fold_csat(events)
    assert c.satisfied + c.neutral + c.dissatisfied == c.n == len(events)
    assert c.satisfied == sum(category("csat", s, lo, hi) == "satisfied" for s, lo, hi in events)
    if c.n:
        assert 1.0 - 1e-9 <= c.total / c.n <= 5.0 + 1e-9


@given(events=st.lists(_answers([(1, 7), (1, 5), (1, 10), (0, 10)]), max_size=50))
def test_ces_categories_partition_n(events: list[tuple[int, int, int]]) -> None:
    c = _fold_ces(events)
    assert c.easy + c.neutral + c.hard == c.n == len(events)
    assert c.easy == sum(category("ces", s, lo, hi) == "easy" for s, lo, hi in events)
    if c.n:
        assert 1.0 - 1e-9 <= c.total / c.n <= 7.0 + 1e-9


@given(seconds=st.floats(min_value=0.0, max_value=1e12, allow_nan=False))
def test_bucket_holds_its_value(seconds: float) -> None:
    low, high = bucket_bounds(bucket_index(seconds))
    assert low <= seconds < high


@given(
    values=st.lists(st.floats(min_value=0.0, max_value=1e9, allow_nan=False), min_size=1),
    q=st.floats(min_value=0.0, max_value=1.0),
)
def test_quantile_point_is_in_the_bucket_of_the_exact_order_statistic(
    values: list[float], q: float
) -> None:
    got = quantile(_fold_hist(values), q, 1)
    rank = min(len(values), max(1, math.ceil(round(q * len(values), 9))))
    exact = sorted(values)[rank - 1]
    assert got.value is not None
    assert bucket_index(got.value) == bucket_index(exact)
    assert got.ci95_low is not None and got.ci95_high is not None
    assert got.ci95_low <= got.value <= got.ci95_high
