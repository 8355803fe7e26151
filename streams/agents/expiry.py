"""When the agents drop state that no current or future window can read (both stages)."""

from __future__ import annotations

import time
from collections.abc import Hashable

EVERY_S = 30.0  # of wall time
FRACTION = 8  # and whenever event time advanced retention / FRACTION


class ExpirySchedule:
    """Every ``EVERY_S`` of wall time, and whenever a key's watermark advanced ``retention /
    FRACTION`` since its last expiry: a replay folds days of event time per minute, and state
    must stay bounded by the retention, not by the replay speed."""

    def __init__(self, retention_s: int) -> None:
        self.step_ms = max(1, retention_s * 1000 // FRACTION)
        self._last_wall = time.monotonic()
        self._expired_at: dict[Hashable, int] = {}  # key -> its watermark at its last expiry

    def wall_due(self) -> bool:
        """Whether ``EVERY_S`` passed since the last time this answered yes."""
        now = time.monotonic()
        if now - self._last_wall > EVERY_S:
            self._last_wall = now
            return True
        return False

    def due(self, key: Hashable, wm: int | None, wall_due: bool) -> bool:
        """Whether to expire ``key`` (a partition, or one key for all) at watermark ``wm``."""
        if wm is None:
            return wall_due
        start = self._expired_at.setdefault(key, wm)
        if wall_due or wm - start >= self.step_ms:
            self._expired_at[key] = wm
            return True
        return False
