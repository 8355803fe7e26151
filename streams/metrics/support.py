"""Support-interaction counts: state-change counters plus two latency histograms.

``opened``, ``responded``, ``resolved``, ``reopened`` count state changes whose event time lies
in the bucket. ``first_response`` holds opened -> first responded latencies and ``resolution``
opened -> resolved latencies, each added only when the latency is known (the event carries
``opened_at`` or the ticket's opening was seen), so ``first_response.count`` can be lower than
``responded``. Re-exported by :mod:`streams.metrics.stats`.
"""

from __future__ import annotations

from typing import Any, Self

from streams.metrics.histogram import LatencyHistogram, bucket_index

_KINDS = {"opened": 0, "responded": 1, "resolved": 2, "reopened": 3}


class SupportCounts:
    __slots__ = ("opened", "responded", "resolved", "reopened", "first_response", "resolution")

    def __init__(
        self,
        opened: int = 0,
        responded: int = 0,
        resolved: int = 0,
        reopened: int = 0,
        first_response: LatencyHistogram | None = None,
        resolution: LatencyHistogram | None = None,
    ) -> None:
        self.opened = opened
        self.responded = responded
        self.resolved = resolved
        self.reopened = reopened
        self.first_response = first_response if first_response is not None else LatencyHistogram()
        self.resolution = resolution if resolution is not None else LatencyHistogram()

    @classmethod
    def empty(cls) -> Self:
        return cls()

    # -- folding (hot path) ------------------------------------------------------------------
    def add_opened(self) -> None:
        self.opened += 1

    def add_responded(self, first_response_s: float | None) -> None:
        self.responded += 1
        if first_response_s is not None:
            self.first_response.add(first_response_s)

    def add_resolved(self, resolution_s: float | None) -> None:
        self.resolved += 1
        if resolution_s is not None:
            self.resolution.add(resolution_s)

    def add_reopened(self) -> None:
        self.reopened += 1

    @staticmethod
    def token(status: str, seconds: float | None) -> tuple[int, int]:
        """``(state change, latency bucket or -1)`` of one event, as :meth:`add_tally` takes
        it; ``seconds`` is the first-response latency of a ``responded`` event, the resolution
        latency of a ``resolved`` one, else ``None``."""
        kind = _KINDS[status]
        return kind, bucket_index(seconds) if seconds is not None and kind in (1, 2) else -1

    def add_tally(self, token: tuple[int, int], k: int) -> None:
        """``k`` events of ``token``: the same as ``k`` calls of the matching ``add_*``."""
        kind, idx = token
        if kind == 0:
            self.opened += k
            return
        if kind == 3:
            self.reopened += k
            return
        if kind == 1:
            self.responded += k
            hist = self.first_response
        else:
            self.resolved += k
            hist = self.resolution
        if idx >= 0:
            hist.buckets[idx] = hist.buckets.get(idx, 0) + k
            hist.count += k

    # -- merging -----------------------------------------------------------------------------
    def iadd(self, other: SupportCounts) -> None:
        self.opened += other.opened
        self.responded += other.responded
        self.resolved += other.resolved
        self.reopened += other.reopened
        self.first_response.iadd(other.first_response)
        self.resolution.iadd(other.resolution)

    def merge(self, other: SupportCounts) -> Self:
        out = self.copy()
        out.iadd(other)
        return out

    def copy(self) -> Self:
        return type(self)(
            self.opened,
            self.responded,
            self.resolved,
            self.reopened,
            self.first_response.copy(),
            self.resolution.copy(),
        )

    def is_empty(self) -> bool:
        return (
            self.opened == 0
            and self.responded == 0
            and self.resolved == 0
            and self.reopened == 0
            and self.first_response.is_empty()
            and self.resolution.is_empty()
        )

    # -- serialisation -----------------------------------------------------------------------
    def to_list(self) -> list[Any]:
        """``[opened, responded, resolved, reopened, [idx, n, ...], [idx, n, ...]]``
        (:meth:`LatencyHistogram.to_list`)."""
        return [
            self.opened,
            self.responded,
            self.resolved,
            self.reopened,
            self.first_response.to_list(),
            self.resolution.to_list(),
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> Self:
        if len(data) != 6:
            raise ValueError(f"SupportCounts: expected 6 fields, got {data!r}")
        return cls(
            int(data[0]),
            int(data[1]),
            int(data[2]),
            int(data[3]),
            LatencyHistogram.from_list(data[4]),
            LatencyHistogram.from_list(data[5]),
        )

    def to_dict(self) -> dict[str, int | float]:
        return {
            "opened": self.opened,
            "responded": self.responded,
            "resolved": self.resolved,
            "reopened": self.reopened,
            "first_response_n": self.first_response.count,
            "resolution_n": self.resolution.count,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SupportCounts):
            return NotImplemented
        return (
            self.opened == other.opened
            and self.responded == other.responded
            and self.resolved == other.resolved
            and self.reopened == other.reopened
            and self.first_response == other.first_response
            and self.resolution == other.resolution
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SupportCounts({self.to_list()!r})"
