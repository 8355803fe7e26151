"""When the agents drop state that no current or future window can read (both stages)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

EVERY_S = 30.0  # of wall time
FRACTION = 8  # and whenever event time advanced retention / FRACTION
# A round is spread over batches: stage 1 looks at KEYS_PER_RECORD keys (~1.7 us each) per
# record of the batch, at least MIN_CHUNK (chunk_for); stage 2, whose ticks come 20 times a
# second, MERGE_CHUNK per tick.
KEYS_PER_RECORD = 2
CHUNK = 10_000  # ExpiryScan's keys per step when the caller gives none
MIN_CHUNK = 1_000
MERGE_CHUNK = 2_000


def chunk_for(records: int) -> int:
    """Keys a stage-1 batch of ``records`` looks at: its expiry work grows with its fold work.

    With one chunk of 10k keys per batch, a round that came due under live traffic (~400
    records a batch at 2k events/s) made a few batches drop ~7k keys each, and the answers of
    ``cxpulse bench``'s latency phase folded then waited up to a second (2026-12-03: p99 860
    ms, against 470 with 1k-key chunks, the p50 the same).

    No upper bound: a record adds about one key (its dedupe entry, a ticket's state, buckets),
    so the scan must look at more than one key per record, or the dead keys pile up faster
    than rounds find them. Until 2026-12-07 the chunk was capped at 10k keys, two per record
    of a 5,000-record batch; with 20,000-record batches that was half a key per record, and
    a 10M-event ``make memory`` run grew to 1.4 GB instead of staying near 300 MB."""
    return max(MIN_CHUNK, KEYS_PER_RECORD * records)


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


_DONE = object()


class ExpiryScan:
    """A round of expiry as a pass over a snapshot of the table's keys, :data:`CHUNK` keys per
    batch, so no batch waits for the whole pass.

    One pass over ~150k keys blocked the event loop for ~0.25 s, and the four stage-1 tables
    and stage 2 were due at the same moment (their wall-clock schedules start together): the
    latency answers of ``cxpulse bench`` that arrived then waited up to a second, which was the
    p99. Spreading the pass keeps the bound on state (a round still covers every key that
    existed when it started; keys added later are looked at by the next round) and costs the
    same in total. Expiry is exact whenever it runs: a key is dropped only if no current or
    future window can read it at the watermark of the batch that drops it, and watermarks only
    grow."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self._keys: Iterator[str] | None = None  # the running round's keys
        self._ahead: Any = _DONE  # the next key of the round (tells the round's last chunk)
        self._scope: set[Hashable] = set()  # what the running round expires (partitions)
        self._pending: set[Hashable] = set()  # due since the round started

    @property
    def running(self) -> bool:
        return self._keys is not None

    def step(
        self,
        due: Iterable[Hashable],
        keys: Callable[[], Iterable[str]],
        chunk: int | None = None,
    ) -> tuple[set[Hashable], list[str]] | None:
        """The scope and the keys to look at in this batch, or None. ``due``: what became due
        now (added to the next round when a round is running); ``keys``: the table's keys
        when a round starts, a list (a snapshot) or an iterator that is read chunk by chunk
        (:func:`streams.stores.scan_keys`: a RocksDB iterator is a consistent snapshot);
        ``chunk``: how many keys this time (default: the scan's own)."""
        self._pending.update(due)
        if self._keys is None:
            if not self._pending:
                return None
            self._keys = iter(keys())
            self._ahead = next(self._keys, _DONE)
            self._scope, self._pending = self._pending, set()
        it, ahead = self._keys, self._ahead
        size = self.chunk if chunk is None else max(1, chunk)
        out: list[str] = []
        while ahead is not _DONE and len(out) < size:
            out.append(ahead)
            ahead = next(it, _DONE)
        self._ahead = ahead
        scope = self._scope
        if ahead is _DONE:
            self._keys = None  # done: free the snapshot
        return scope, out
