"""Fixed log-spaced latency histogram (pure, additive).

Why fixed buckets: a quantile over any window, dimension or worker must come from additive
counts (SPEC §3 "never average averages"). A histogram whose bucket edges are the same
everywhere merges by adding counts, exactly, in any order.

Layout (bucket index -> interval, seconds):

* ``0``                  underflow ``[0, 0.1)``
* ``1 .. 180``           20 buckets per decade, ``[0.1·10^((i-1)/20), 0.1·10^(i/20))``,
                         i.e. from 0.1 s up to 1e8 s (about 3.2 years); each bucket's upper
                         edge is 12.2 % above its lower edge
* ``181``                overflow ``[1e8, inf)``

Storage is sparse (``dict[int, int]`` of non-zero buckets), so a window with a handful of
tickets costs a handful of entries, and the changelog form is ``[idx, count, idx, count, ...]``
sorted by ``idx``. It was ``[[idx, count], ...]`` before 2026-12-02, and that form is still read:
a pair as its own list cost ~90 B more per non-zero bucket, kept in both stages' tables (a 1h
support bucket of a 1M-event replay held ~80 of them).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Self

PER_DECADE = 20
MIN_SECONDS = 0.1
DECADES = 9
UNDERFLOW_INDEX = 0
OVERFLOW_INDEX = PER_DECADE * DECADES + 1  # 181

# _EDGES[j] = 0.1 * 10**(j/20), j = 0..180; computed once so that bucket_index() and
# bucket_bounds() use the very same floats (a value exactly on an edge goes to the upper bucket).
_EDGES: tuple[float, ...] = tuple(10.0 ** (j / PER_DECADE - 1) for j in range(OVERFLOW_INDEX))


def bucket_index(seconds: float) -> int:
    """Index of the bucket holding ``seconds``; negative (and NaN) clamp to 0 s."""
    if not seconds >= 0.0:  # also catches NaN
        seconds = 0.0
    return bisect_right(_EDGES, seconds)


def bucket_bounds(idx: int) -> tuple[float, float]:
    """``(low, high)`` of bucket ``idx``: low inclusive, high exclusive."""
    if idx == UNDERFLOW_INDEX:
        return (0.0, _EDGES[0])
    if idx == OVERFLOW_INDEX:
        return (_EDGES[-1], math.inf)
    if 0 < idx < OVERFLOW_INDEX:
        return (_EDGES[idx - 1], _EDGES[idx])
    raise ValueError(f"bucket index out of range: {idx}")


def bucket_point(idx: int) -> float:
    """The deterministic value reported for a quantile that falls in bucket ``idx``.

    Regular buckets: the geometric midpoint ``sqrt(low * high)``, which is at most ~5.9 %
    away from any value in the bucket (edges are a factor 10^(1/20) apart). The underflow
    bucket has low edge 0, so it reports its arithmetic midpoint 0.05 s; the overflow bucket
    has no upper edge, so it reports its lower edge 1e8 s.
    """
    low, high = bucket_bounds(idx)
    if idx == UNDERFLOW_INDEX:
        return (low + high) / 2
    if idx == OVERFLOW_INDEX:
        return low
    return math.sqrt(low * high)


class LatencyHistogram:
    """Sparse counts per fixed bucket, plus the total ``count``."""

    __slots__ = ("buckets", "count")

    def __init__(self, buckets: dict[int, int] | None = None) -> None:
        self.buckets: dict[int, int] = {k: v for k, v in buckets.items() if v} if buckets else {}
        self.count: int = sum(self.buckets.values())

    @classmethod
    def empty(cls) -> Self:
        return cls()

    def add(self, seconds: float) -> None:
        idx = bucket_index(seconds)
        self.buckets[idx] = self.buckets.get(idx, 0) + 1
        self.count += 1

    def iadd(self, other: LatencyHistogram) -> None:
        buckets = self.buckets
        for idx, n in other.buckets.items():
            buckets[idx] = buckets.get(idx, 0) + n
        self.count += other.count

    def merge(self, other: LatencyHistogram) -> Self:
        out = self.copy()
        out.iadd(other)
        return out

    def copy(self) -> Self:
        return type(self)(self.buckets)

    def is_empty(self) -> bool:
        return self.count == 0

    def to_list(self) -> list[int]:
        """``[idx, n, idx, n, ...]``, sorted by ``idx``."""
        buckets = self.buckets  # sorting the int keys is ~2x faster than the items (profile)
        if not buckets:
            return []  # most support buckets: no latency known yet
        return [x for idx in sorted(buckets) for x in (idx, buckets[idx])]

    @classmethod
    def from_list(cls, data: list[Any]) -> Self:
        """From :meth:`to_list`'s form, or the ``[[idx, n], ...]`` one written before it."""
        if not data:
            return cls()
        idxs, ns = data[0::2], data[1::2]
        if (
            len(idxs) == len(ns)
            and set(map(type, data)) == {int}
            and min(idxs) >= 0
            and max(idxs) <= OVERFLOW_INDEX
            and min(ns) > 0
            and len(set(idxs)) == len(idxs)
        ):  # what to_list() writes (checked in C): no entry to add up, convert or drop
            obj = cls.__new__(cls)
            obj.buckets = dict(zip(idxs, ns, strict=True))
            obj.count = sum(ns)
            return obj
        return cls._parse(data)

    @classmethod
    def _parse(cls, data: list[Any]) -> Self:
        """:meth:`from_list` for any input: entries converted, checked, added up."""
        if data and isinstance(data[0], list):
            pairs: Any = data
        elif len(data) % 2:
            raise ValueError(f"bad histogram: odd length {data!r}")
        else:
            it = iter(data)
            pairs = zip(it, it, strict=True)
        buckets: dict[int, int] = {}
        for pair in pairs:
            idx, n = int(pair[0]), int(pair[1])
            if not 0 <= idx <= OVERFLOW_INDEX or n < 0:
                raise ValueError(f"bad histogram entry {pair!r}")
            if n:
                buckets[idx] = buckets.get(idx, 0) + n
        return cls(buckets)

    def to_dict(self) -> dict[str, int | float]:
        return {"n": self.count}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self.count == other.count and self.buckets == other.buckets

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LatencyHistogram({self.to_list()!r})"
