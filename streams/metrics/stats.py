"""Additive counts (sufficient statistics) per metric family. Pure: no I/O, no clocks.

Every windowed value is computed from these counts, never from averages (SPEC §3), so two
counts for disjoint event sets merge exactly by adding fields: any window, dimension member
or worker can be combined in any order. Each class offers:

* ``empty()``, ``add(...)`` (fold one event, in place: the hot path), ``iadd(other)`` (in-place
  merge), ``merge(other)`` (new object), ``is_empty()``, ``==``;
* ``to_list()`` / ``from_list()``: the compact JSON form stored in Kafka changelogs (field
  order is the layout: bump ``faust.App(version=)`` when it changes);
* ``to_dict()``: the human ``counts`` object of a score record.

Categories (also exported as :func:`category`, used for ``cx_responses_total``):

* NPS (always 0–10): promoter 9–10, passive 7–8, detractor 0–6.
* CSAT: satisfied = top two boxes of the answer's own scale (``score >= hi-1``), dissatisfied =
  bottom two (``score <= lo+1``), else neutral. On a scale narrower than 4 points the boxes
  overlap and "satisfied" wins. The mean uses the score rescaled linearly to 1–5.
* CES: the score is rescaled linearly to 1–7 (``x = 1 + 6(score-lo)/(hi-lo)``); easy ``x >= 5``,
  hard ``x < 4``, else neutral. The thresholds are tested in integer arithmetic so that a
  rescaled value landing exactly on 5 or 4 is never misfiled by float rounding.

Default scales add the integer score itself (exact sums); custom scales need ``hi > lo``,
which input validation guarantees.
"""

from __future__ import annotations

from functools import reduce
from operator import add
from typing import Self

from streams.metrics.base import FlatCounts
from streams.metrics.histogram import (
    LatencyHistogram,
    bucket_bounds,
    bucket_index,
    bucket_point,
)

# SupportCounts holds histograms (not flat scalars): its own module, re-exported here.
from streams.metrics.support import SupportCounts

__all__ = [
    "FAMILIES",
    "CesCounts",
    "ChurnCounts",
    "Counts",
    "CsatCounts",
    "LatencyHistogram",
    "NpsCounts",
    "SupportCounts",
    "bucket_bounds",
    "bucket_index",
    "bucket_point",
    "add_values",
    "category",
]


def nps_category(score: int) -> str:
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def csat_category(score: int, lo: int = 1, hi: int = 5) -> str:
    if score >= hi - 1:
        return "satisfied"
    if score <= lo + 1:
        return "dissatisfied"
    return "neutral"


def ces_category(score: int, lo: int = 1, hi: int = 7) -> str:
    # x >= 5  <=>  6(score-lo) >= 4(hi-lo);  x < 4  <=>  6(score-lo) < 3(hi-lo)
    num, span = 6 * (score - lo), hi - lo
    if num >= 4 * span:
        return "easy"
    if num < 3 * span:
        return "hard"
    return "neutral"


def category(survey: str, score: int, lo: int, hi: int) -> str:
    """Category label of one answer; same rules as the ``add`` methods."""
    if survey == "nps":
        return nps_category(score)
    if survey == "csat":
        return csat_category(score, lo, hi)
    if survey == "ces":
        return ces_category(score, lo, hi)
    raise ValueError(f"unknown survey {survey!r}")


class NpsCounts(FlatCounts):
    __slots__ = ("n", "promoters", "passives", "detractors")
    _FIELDS = (("n", int), ("promoters", int), ("passives", int), ("detractors", int))

    def __init__(
        self, n: int = 0, promoters: int = 0, passives: int = 0, detractors: int = 0
    ) -> None:
        self.n = n
        self.promoters = promoters
        self.passives = passives
        self.detractors = detractors

    def add(self, score: int) -> None:
        self.n += 1
        if score >= 9:
            self.promoters += 1
        elif score >= 7:
            self.passives += 1
        else:
            self.detractors += 1

    @staticmethod
    def token(score: int) -> str:
        """The category of one answer (:func:`nps_category`), as :meth:`add_tally` takes it."""
        return nps_category(score)

    def add_tally(self, token: str, k: int) -> None:
        """``k`` answers of category ``token``: the same as ``k`` calls of :meth:`add`."""
        self.n += k
        if token == "promoter":
            self.promoters += k
        elif token == "passive":
            self.passives += k
        else:
            self.detractors += k

    def iadd(self, other: Self) -> None:
        self.n += other.n
        self.promoters += other.promoters
        self.passives += other.passives
        self.detractors += other.detractors


class CsatCounts(FlatCounts):
    __slots__ = ("n", "satisfied", "neutral", "dissatisfied", "total", "total_sq")
    _FIELDS = (
        ("n", int),
        ("satisfied", int),
        ("neutral", int),
        ("dissatisfied", int),
        ("total", float),
        ("total_sq", float),
    )

    def __init__(
        self,
        n: int = 0,
        satisfied: int = 0,
        neutral: int = 0,
        dissatisfied: int = 0,
        total: float = 0.0,
        total_sq: float = 0.0,
    ) -> None:
        self.n = n
        self.satisfied = satisfied
        self.neutral = neutral
        self.dissatisfied = dissatisfied
        self.total = float(total)
        self.total_sq = float(total_sq)

    def add(self, score: int, lo: int = 1, hi: int = 5) -> None:
        self.n += 1
        if score >= hi - 1:  # csat_category, inlined (hot path)
            self.satisfied += 1
        elif score <= lo + 1:
            self.dissatisfied += 1
        else:
            self.neutral += 1
        x: float = score if (lo == 1 and hi == 5) else 1 + 4 * (score - lo) / (hi - lo)
        self.total += x
        self.total_sq += x * x

    @staticmethod
    def token(score: int, lo: int = 1, hi: int = 5) -> tuple[str, float]:
        """``(category, x)`` of one answer: :meth:`add_tally` takes the category
        (:func:`csat_category`), :func:`add_values` the rescaled value ``x``."""
        x = score if (lo == 1 and hi == 5) else 1 + 4 * (score - lo) / (hi - lo)
        return csat_category(score, lo, hi), x

    def add_tally(self, token: str, k: int) -> None:
        """The counters of ``k`` answers of category ``token`` (not the sums: :func:`add_values`)."""
        self.n += k
        if token == "satisfied":
            self.satisfied += k
        elif token == "neutral":
            self.neutral += k
        else:
            self.dissatisfied += k

    def iadd(self, other: Self) -> None:
        self.n += other.n
        self.satisfied += other.satisfied
        self.neutral += other.neutral
        self.dissatisfied += other.dissatisfied
        self.total += other.total
        self.total_sq += other.total_sq


class CesCounts(FlatCounts):
    __slots__ = ("n", "easy", "neutral", "hard", "total", "total_sq")
    _FIELDS = (
        ("n", int),
        ("easy", int),
        ("neutral", int),
        ("hard", int),
        ("total", float),
        ("total_sq", float),
    )

    def __init__(
        self,
        n: int = 0,
        easy: int = 0,
        neutral: int = 0,
        hard: int = 0,
        total: float = 0.0,
        total_sq: float = 0.0,
    ) -> None:
        self.n = n
        self.easy = easy
        self.neutral = neutral
        self.hard = hard
        self.total = float(total)
        self.total_sq = float(total_sq)

    def add(self, score: int, lo: int = 1, hi: int = 7) -> None:
        self.n += 1
        num, span = 6 * (score - lo), hi - lo  # ces_category, inlined (hot path)
        if num >= 4 * span:
            self.easy += 1
        elif num < 3 * span:
            self.hard += 1
        else:
            self.neutral += 1
        x: float = score if (lo == 1 and hi == 7) else 1 + 6 * (score - lo) / (hi - lo)
        self.total += x
        self.total_sq += x * x

    @staticmethod
    def token(score: int, lo: int = 1, hi: int = 7) -> tuple[str, float]:
        """``(category, x)`` of one answer (:func:`ces_category`), as for CSAT."""
        x = score if (lo == 1 and hi == 7) else 1 + 6 * (score - lo) / (hi - lo)
        return ces_category(score, lo, hi), x

    def add_tally(self, token: str, k: int) -> None:
        """The counters of ``k`` answers of category ``token`` (not the sums: :func:`add_values`)."""
        self.n += k
        if token == "easy":
            self.easy += k
        elif token == "neutral":
            self.neutral += k
        else:
            self.hard += k

    def iadd(self, other: Self) -> None:
        self.n += other.n
        self.easy += other.easy
        self.neutral += other.neutral
        self.hard += other.hard
        self.total += other.total
        self.total_sq += other.total_sq


class ChurnCounts(FlatCounts):
    __slots__ = ("cancellations", "lost_mrr")
    _FIELDS = (("cancellations", int), ("lost_mrr", float))

    def __init__(self, cancellations: int = 0, lost_mrr: float = 0.0) -> None:
        self.cancellations = cancellations
        self.lost_mrr = float(lost_mrr)

    def add(self, mrr: float = 0.0) -> None:
        self.cancellations += 1
        self.lost_mrr += mrr

    def iadd(self, other: Self) -> None:
        self.cancellations += other.cancellations
        self.lost_mrr += other.lost_mrr


def add_values(counts: CsatCounts | CesCounts, values: list[float]) -> None:
    """``total += x`` and ``total_sq += x * x`` for each value in order: bit for bit what the
    same answers' :meth:`add` calls sum (``reduce`` adds left to right, as ``+=`` does; the
    float sums depend on the order, and crash tests compare runs exactly)."""
    counts.total = reduce(add, values, counts.total)
    counts.total_sq = reduce(add, [x * x for x in values], counts.total_sq)


Counts = NpsCounts | CsatCounts | CesCounts | ChurnCounts | SupportCounts

FAMILIES: dict[str, type[Counts]] = {
    "nps": NpsCounts,
    "csat": CsatCounts,
    "ces": CesCounts,
    "churn": ChurnCounts,
    "support": SupportCounts,
}
