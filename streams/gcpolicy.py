"""The worker's cyclic garbage collector: the live state is frozen out of its scans.

CPython's cyclic GC scans every tracked container (lists, dicts, objects with slots) of a
generation when that generation's allocation count passes its threshold, and an object that
survives is scanned again in each older generation. The worker's state is millions of such
containers (stage-1 bucket values ``[marker, [counts]]``, stage-2 snapshots ``{source: [marker,
[counts]]}``, interaction entries...), each rewritten every batch that touches it, so every new
value was scanned once young and once more in generation 1: in the offline fold of the bench's
200k workload that was 0.67 s of ~6.5 s (~10%), and a generation-1 collection held the loop
for ~25 ms every second or so. None of that state is in a reference cycle; Faust, aiokafka and
asyncio make a few cycles (futures, tracebacks): a full collection after 20 s of a busy
worker found 632 unreachable objects.

So every :data:`FREEZE_S` the worker moves every tracked object into the permanent generation
(``gc.freeze()``, O(1)): the young collections see only what was allocated since, and nothing
ages into generation 1 or 2. Objects freed by reference counting are freed as before, frozen or
not; only garbage *cycles* that were frozen wait, for the full collection that runs every
``CX_GC_FULL_INTERVAL`` seconds (unfreeze, collect everything, freeze again). That collection
scans the whole state (~0.85 us per tracked object: ~0.26 s after the 200k bench, more after a
larger replay) and holds the event loop meanwhile: the interval trades that pause against the
memory held by cycles until then. Measured (CHANGELOG, 2026-12-07): the 200k bench's worker
spent 0.36 s in the GC before, ~0.05 s after, its longest pause 114 ms before, 12-26 ms after.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Young-generation thresholds. CPython's (700, 10, 10) rescanned the state many times over
#: (~20% of the fold, 2026-12-01); (50,000, 20, 100) until 2026-12-07. With the state frozen
#: every FREEZE_S, a young collection only scans what was allocated since and is still alive,
#: which is never garbage of ours: at 200k, one seldom runs between two freezes (the bench:
#: 0.011 s of young collections in all against 0.084 s at 50k, the longest 12 against 30 ms).
THRESHOLDS = (200_000, 20, 100)
#: Seconds between two freezes: about one stage-1 batch cycle.
FREEZE_S = 0.1


class GcPolicy:
    """Thresholds and freezing (:meth:`start`), then :meth:`tick` every :data:`FREEZE_S`."""

    def __init__(self, full_interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if full_interval_s <= 0:
            raise ValueError("the full-collection interval must be positive")
        self.full_interval_s = full_interval_s
        self.clock = clock
        self.last_full = clock()
        self.full_collections = 0

    def start(self) -> None:
        """Before the worker starts: what is alive now (imports, the app) is never scanned."""
        gc.set_threshold(*THRESHOLDS)
        gc.freeze()
        self.last_full = self.clock()

    def tick(self) -> float | None:
        """Freeze what is alive; first a full collection when one is due. Returns the
        seconds that collection took, or None."""
        took = None
        if self.clock() - self.last_full >= self.full_interval_s:
            took = self.collect_all()
        gc.freeze()
        return took

    def collect_all(self) -> float:
        """Collect every generation, the frozen state included (it stays unfrozen until the
        next :meth:`tick`)."""
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        t0 = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - t0
        self.last_full = self.clock()
        self.full_collections += 1
        log.info("full GC: %d unreachable objects among %d frozen, %.0f ms",
                 found, frozen, took * 1000)  # fmt: skip
        return took
