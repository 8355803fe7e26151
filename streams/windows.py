"""Rolling event-time windows (SPEC §4), pure arithmetic on epoch milliseconds.

A window of size W has granularity g = W/60. With watermark ``wm`` (the largest event time seen),
``window_end = (wm // g + 1) * g`` and ``window_start = window_end - W``: exactly the 60 buckets
``b`` with ``end_b - 60 <= b < end_b`` where bucket ``b`` covers ``[b*g, (b+1)*g)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

BUCKETS_PER_WINDOW = 60


@dataclass(frozen=True, slots=True)
class WindowSpec:
    name: str  # "5m", "1h", ...
    size_ms: int

    @property
    def granularity_ms(self) -> int:
        return self.size_ms // BUCKETS_PER_WINDOW

    def bucket(self, t_ms: int) -> int:
        return t_ms // self.granularity_ms

    def end_bucket(self, watermark_ms: int) -> int:
        """Exclusive end bucket of the window holding the watermark."""
        return watermark_ms // self.granularity_ms + 1

    def bucket_range(self, watermark_ms: int) -> range:
        end = self.end_bucket(watermark_ms)
        return range(end - BUCKETS_PER_WINDOW, end)

    def bounds(self, watermark_ms: int) -> tuple[int, int]:
        """``(window_start_ms, window_end_ms)`` for a watermark."""
        end = self.end_bucket(watermark_ms) * self.granularity_ms
        return end - self.size_ms, end

    def is_live(self, bucket: int, watermark_ms: int) -> bool:
        """Can this bucket still be inside the current or a future window?"""
        return bucket >= self.end_bucket(watermark_ms) - BUCKETS_PER_WINDOW


def window_specs(window_seconds: dict[str, int]) -> tuple[WindowSpec, ...]:
    specs = []
    for name, seconds in window_seconds.items():
        size_ms = seconds * 1000
        if size_ms % BUCKETS_PER_WINDOW:
            raise ValueError(f"window {name} is not a multiple of {BUCKETS_PER_WINDOW} ms")
        specs.append(WindowSpec(name, size_ms))
    return tuple(specs)


@lru_cache(maxsize=4096)
def iso(ms: int) -> str:
    """RFC 3339 UTC with millisecond precision: ``2026-11-22T10:00:00.000Z``.

    Cached: a score record formats its window bounds, watermark and emission time, which repeat
    across the members and metrics of one evaluation round, and each follow-up the batch's
    time (profile of a replay: ~2.5% of the worker's time was here)."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
