"""Stage 1: fold a batch of raw input records of one topic into exact per-partition counts.

Pure of Faust: works on any ``MutableMapping`` (the Faust table in production, a dict in tests)
and returns what the caller must write and publish. Key layout (all keys start with the input
partition, which ``PartitionedTable`` uses as the changelog partition):

=========================================  ===========================================
``{p}|k|{family}|{dim}|{member}|{w}|{b}``  ``[marker, *counts]`` bucket counts
``{p}|d|{event_id}``                        ``~(first_offset << 28 | t_min)`` dedupe entry
                                            (``[first_offset, t_ms]`` before 2026-12-02,
                                            ``first_offset << 44 | t_ms`` before 2026-12-04,
                                            both still read: :func:`dedupe_entry`); a batch's
                                            new ones: :attr:`BatchResult.dedupe`
``{p}|D|{first_offset}``                    newest event time (ms) of a bundle of dedupe
                                            entries (``streams/tables.py``), for expiry
``{p}|i|{interaction_id}``                  ``[marker, opened_ms, responded, last_t_ms]``
``{p}|c|{customer_id}``                     ``[marker, active, [[dim, member], ...]]``
``{p}|a|{dim}|{member}``                    ``[marker, active_customers]``
``{p}|m``                                   ``{dim: [members]}`` (member cap)
``{p}|p``                                   ``[offset, watermark_ms]`` progress, written last
=========================================  ===========================================

``marker`` is the input offset up to which the value holds every record of its partition: for a
bucket, the last offset of the batch that last wrote it; for the other keys, their own last
record's. A replayed record at or below it is not folded again (see docs/design.md, "Exactness
without broker transactions").

A batch's events are folded into their buckets at its end, family by family
(:meth:`_PartitionBatch.fold_pending`): from tallies per dimension, window and bucket
(:meth:`_PartitionBatch.fold_batched`), or one event at a time (:meth:`_PartitionBatch.fold_one`,
the reference, and the path of a replay after a crash). ``tests/unit/test_fold_batched.py``
checks that both give the same bits.
"""

from __future__ import annotations

import base64
import heapq
from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from streams import events as ev
from streams.dims import MemberCap, clean
from streams.metrics.stats import (
    FAMILIES,
    CesCounts,
    ChurnCounts,
    CsatCounts,
    NpsCounts,
    SupportCounts,
    add_values,
)
from streams.windows import BUCKETS_PER_WINDOW, WindowSpec, iso

# The batched fold (_PartitionBatch.fold_batched): family -> add ``k`` events of one token.
_TALLY: dict[str, Any] = {
    "nps": NpsCounts.add_tally,
    "csat": CsatCounts.add_tally,
    "ces": CesCounts.add_tally,
    "support": SupportCounts.add_tally,
}

FAMILY_TOPIC = {
    "nps": ev.TOPIC_SURVEYS,
    "csat": ev.TOPIC_SURVEYS,
    "ces": ev.TOPIC_SURVEYS,
    "support": ev.TOPIC_SUPPORT,
    "churn": ev.TOPIC_CANCELLATIONS,
}


class Record(NamedTuple):  # a frozen dataclass took ~0.6 us to build, this ~0.25 (per event)
    partition: int
    offset: int
    raw: bytes | None
    timestamp_ms: int
    key: bytes | None = None


@dataclass
class BatchResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    writes: dict[str, Any] = field(default_factory=dict)  # value None = delete
    progress: dict[str, Any] = field(default_factory=dict)  # written after a flush: the seal
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    followups: list[dict[str, Any]] = field(default_factory=list)
    partials: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    watermarks: dict[int, int] = field(default_factory=dict)  # partition -> watermark
    responses: list[tuple[str, str, str, str]] = field(default_factory=list)
    cancellations: list[tuple[str, float]] = field(default_factory=list)
    latencies: list[tuple[str, str, float]] = field(default_factory=list)  # kind, channel, s
    dead_reasons: Counter[str] = field(default_factory=Counter)
    min_timestamp_ms: int | None = None
    touched: set[str] = field(default_factory=set)  # bucket keys this batch folded into
    # partition -> (new dedupe entries {event_id: entry}, the lowest first offset among them,
    # the newest of their (rounded) event times): stored one by one, sent as one bundle
    # (streams/tables.py, SourcePartitionedTable.write_dedupe)
    dedupe: dict[int, tuple[dict[str, int | list[int]], int, int]] = field(default_factory=dict)

    def state_writes(self) -> dict[str, Any]:
        """:attr:`writes` with the dedupe entries as keys of their own: the state a batch
        leaves in a plain dict table (tests, the simulator)."""
        out = dict(self.writes)
        for p, (entries, _first, _newest) in self.dedupe.items():
            out.update({f"{p}|d|{event_id}": value for event_id, value in entries.items()})
        return out


# A dedupe entry is one int: the offset of the id's first occurrence and its event time, packed.
# The list ``[offset, t_ms]`` it replaces cost ~130 B more per entry (list + two ints), and there
# is one entry per event within retention: ~100 MB of a 1M-event replay's peak RSS
# (docs/design.md, "Memory").
#
# The packed form must stay within 64 bits: orjson writes no larger integer. The first packing
# (2026-12-02), ``offset << 44 | t_ms``, passed 2**64 at input offset 2**20: a partition's
# 1,048,576th record crashed the fold agent (TypeError in the changelog send) in a loop. It is
# ``~(offset << 28 | t_min)`` now: negative (the first form is not), t in whole minutes rounded
# up (the entry is only read for expiry, which may then keep it up to a minute longer, never
# shorter) and the offset in 35 bits (34 billion records per partition). Outside that range
# (a larger offset, a time before 1970 or after 2480): the list form. Both older forms are read.
DEDUPE_T_BITS = 44  # the first packing, still read
_DEDUPE_T_MASK = (1 << DEDUPE_T_BITS) - 1
DEDUPE_MIN_BITS = 28
_DEDUPE_MIN_MASK = (1 << DEDUPE_MIN_BITS) - 1
DEDUPE_MAX_OFFSET = (1 << (63 - DEDUPE_MIN_BITS)) - 1
_MINUTE_MS = 60_000


def dedupe_value(offset: int, t_ms: int) -> int | list[int]:
    if 0 <= offset <= DEDUPE_MAX_OFFSET and t_ms >= 0:
        t_min = -(-t_ms // _MINUTE_MS)  # rounded up
        if t_min <= _DEDUPE_MIN_MASK:
            return ~(offset << DEDUPE_MIN_BITS | t_min)
    return [offset, t_ms]


def dedupe_entry(value: int | list[int]) -> tuple[int, int]:
    """``(first offset, t_ms)`` of a stored dedupe entry, in any of its forms (the packed
    one's time is rounded up to the minute)."""
    if isinstance(value, int):
        if value < 0:
            x = ~value
            return x >> DEDUPE_MIN_BITS, (x & _DEDUPE_MIN_MASK) * _MINUTE_MS
        return value >> DEDUPE_T_BITS, value & _DEDUPE_T_MASK  # the first packing
    return value[0], value[1]


def _grouped(keys: Iterable[Any], values: list[float]) -> dict[Any, list[float]]:
    """``values`` by their key, each list in the order of ``values`` (event order: float sums
    added in that order are bit for bit the per-event fold's)."""
    out: dict[Any, list[float]] = {}
    for key, x in zip(keys, values, strict=True):
        got = out.get(key)
        if got is None:
            out[key] = [x]
        else:
            got.append(x)
    return out


def dead_letter(topic: str, rec: Record, reason: str, detail: str, now_ms: int) -> dict[str, Any]:
    raw = rec.raw or b""
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return {
        "topic": topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "reason": reason,
        "detail": detail,
        "raw": text,
        "raw_encoding": encoding,
        "received_at": iso(now_ms),
    }


def _tombstone(key: bytes) -> ev.Customer:
    customer_id = key.decode("utf-8", errors="replace")
    return ev.Customer(customer_id, "cancelled", None, 0.0, {})


class Folder:
    """Folds batches of one input topic. One instance per worker and topic."""

    def __init__(
        self,
        topic: str,
        table: MutableMapping[str, Any],
        windows: tuple[WindowSpec, ...],
        dimensions: tuple[str, ...],
        *,
        max_members: int = 50,
        retention_ms: int,
        late_ms: int = 300_000,
        max_future_ms: int = 300_000,
        max_bytes: int = 65_536,
    ) -> None:
        self.topic = topic
        self.table = table
        self.windows = windows
        self.dimensions = dimensions
        self.max_members = max_members
        self.retention_ms = retention_ms
        self.late_ms = late_ms
        self.max_future_ms = max_future_ms
        self.max_bytes = max_bytes
        self.batched = True  # False: every event through _PartitionBatch.fold_one (tests)
        # (partition, window name) -> heap of (bucket, key) of the buckets this worker stored,
        # each key once (``scheduled``): a batch deletes the ones its watermark left dead
        # (:meth:`_PartitionBatch.expire_buckets`; docs/design.md, "Exactness without broker
        # transactions").
        self.deaths: dict[tuple[int, str], list[tuple[int, str]]] = {}
        self.scheduled: set[str] = set()

    # -- batch ---------------------------------------------------------------------------
    def fold(self, records: Iterable[Record], now_ms: int) -> BatchResult:
        out = BatchResult()
        by_partition: dict[int, list[Record]] = {}
        for rec in records:
            by_partition.setdefault(rec.partition, []).append(rec)
            if out.min_timestamp_ms is None or rec.timestamp_ms < out.min_timestamp_ms:
                out.min_timestamp_ms = rec.timestamp_ms
        for p, recs in by_partition.items():
            _PartitionBatch(self, p, out, now_ms).run(recs)
        return out

    def expired_keys(self, partitions: Iterable[int], keys: list[str] | None = None) -> list[str]:
        """Keys of ``partitions`` that no current or future window can read any more, among
        ``keys`` (default: the whole table; the agent passes a chunk, see
        :class:`streams.agents.expiry.ExpiryScan`).

        One pass for all of them: a pass over ~150k keys blocked the event loop for ~0.25 s,
        and a wall-clock expiry round used to make one pass per partition."""
        horizons: dict[str, tuple[int, int]] = {}  # "{p}" -> (watermark, horizon)
        for p in partitions:
            progress = self.table.get(f"{p}|p")
            if progress and progress[1] is not None:
                horizons[str(p)] = (progress[1], progress[1] - self.retention_ms)
        if not horizons:
            return []
        specs = {w.name: w for w in self.windows}
        dead = []
        table = self.table
        for key in list(table.keys()) if keys is None else keys:
            parts = key.split("|")
            bounds = horizons.get(parts[0])
            if bounds is None:
                continue
            wm, horizon = bounds
            kind = parts[1]
            if kind == "k":
                spec = specs.get(parts[5])
                if spec is None or not spec.is_live(int(parts[6]), wm):
                    dead.append(key)
            elif kind in ("d", "i", "D"):
                value = table.get(key)  # a chunk's key may be gone since its snapshot
                if value is not None:
                    if kind == "d":
                        t_ms = dedupe_entry(value)[1]
                    else:  # an interaction's last event time; a bundle marker's newest
                        t_ms = value[3] if kind == "i" else value
                    if t_ms < horizon:
                        dead.append(key)
        return dead


class _PartitionBatch:
    """The records of one partition within one batch."""

    def __init__(self, folder: Folder, p: int, out: BatchResult, now_ms: int) -> None:
        self.f = folder
        self.p = p
        self.out = out
        self.now_ms = now_ms
        self.dirty = out.writes
        progress = folder.table.get(f"{p}|p") or [-1, None]
        self.done_offset: int = progress[0]
        self.wm: int | None = progress[1]
        self.cap = MemberCap(folder.max_members, folder.table.get(f"{p}|m"))
        # (family, dim, member) -> one dict per window: bucket -> slot, where a slot is
        # [marker, counts object, count key, WindowSpec, bucket, stored form (materialize)].
        # Insertion order = first touch (partials order).
        self.cells: dict[tuple[str, str, str], list[dict[int, list[Any]]]] = {}
        self.work: list[list[Any]] = []  # every slot, in creation order (write order)
        # family -> events to fold at the end of the batch (add(), fold_pending())
        self.pending: dict[str, list[tuple[Any, ...]]] = {}
        self.grid = [(i, w.name, w.granularity_ms, w) for i, w in enumerate(folder.windows)]
        # window indices in name order: partials list their buckets sorted by (window, bucket)
        self.by_name = sorted(range(len(folder.windows)), key=lambda i: folder.windows[i].name)
        # per dimension: the parts it is made of (None for "all"), and raw value(s) -> member
        self.plan = [(d, None if d == "all" else tuple(d.split("+"))) for d in folder.dimensions]
        self.member_of: dict[tuple[str, Any], str] = {}
        self.active_touched: set[tuple[str, str]] = set()
        self.last_offset = self.done_offset
        # this batch's new dedupe entries (event_id -> entry), the first one's offset, the
        # newest event time among them (BatchResult.dedupe)
        self.entries: dict[str, int | list[int]] = {}
        self.entries_first = -1
        self.entries_newest = -1

    def get(self, key: str) -> Any:
        if key in self.dirty:
            return self.dirty[key]
        return self.f.table.get(key)

    def run(self, recs: list[Record]) -> None:
        for rec in recs:
            if rec.offset <= self.last_offset:
                # At or below the seal: folded by an earlier batch (a replay after a restart).
                # Above the seal: folded earlier in this batch; after a rebalance Faust can hand
                # over prefetched records and, after its seek, the same offsets again
                # (streams/agents/gaps.py), and both copies can land in one batch.
                continue
            self.last_offset = rec.offset
            outcome = self.one(rec)
            self.out.outcomes[outcome] += 1
        if self.last_offset == self.done_offset:
            return
        if self.cap.changed:
            self.dirty[f"{self.p}|m"] = self.cap.dump()
        self.fold_pending()
        self.materialize()
        self.expire_buckets()
        self.publish()
        self.out.progress[f"{self.p}|p"] = [self.last_offset, self.wm]
        if self.entries:  # the bundle's time: that of its newest entry, as an entry keeps it
            newest = dedupe_entry(dedupe_value(self.entries_first, self.entries_newest))[1]
            self.out.dedupe[self.p] = (self.entries, self.entries_first, newest)
        if self.wm is not None:
            self.out.watermarks[self.p] = self.wm

    def reject(self, rec: Record, reason: str, detail: str) -> str:
        self.out.dead_letters.append(dead_letter(self.f.topic, rec, reason, detail, self.now_ms))
        self.out.dead_reasons[reason] += 1
        return "dead_letter"

    def one(self, rec: Record) -> str:
        f = self.f
        if rec.raw is None and f.topic == ev.TOPIC_CUSTOMERS and rec.key:
            # A tombstone on the compacted customer topic: the customer left the base.
            self.customer(_tombstone(rec.key), rec.offset)
            return "applied"
        event = ev.decode(
            f.topic, rec.raw, self.now_ms, max_future_ms=f.max_future_ms, max_bytes=f.max_bytes
        )
        if isinstance(event, ev.Rejection):
            return self.reject(rec, event.reason, event.detail)
        if isinstance(event, ev.Customer):
            self.customer(event, rec.offset)
            return "applied"
        t = event.t_ms
        wm = self.wm
        if wm is not None and t < wm - f.retention_ms:
            return self.reject(rec, "too_old", f"event time {iso(t)} is older than retention")
        event_id = event.event_id
        seen = self.entries.get(event_id)  # this batch's, else the stored one
        if seen is None:
            seen = f.table.get(f"{self.p}|d|{event_id}")
        if seen is not None and dedupe_entry(seen)[0] != rec.offset:
            return "duplicate"
        if seen is None:
            self.entries[event_id] = dedupe_value(rec.offset, t)
            if self.entries_first < 0:
                self.entries_first = rec.offset
            if t > self.entries_newest:
                self.entries_newest = t
        late = wm is not None and t < wm - f.late_ms
        self.wm = t if wm is None else max(wm, t)
        if isinstance(event, ev.Survey):
            self.survey(event, rec.offset)
        elif isinstance(event, ev.Support):
            self.support(event, rec.offset)
        else:
            self.cancellation(event, rec.offset)
        return "late" if late else "applied"

    # -- folding into buckets -----------------------------------------------------------
    def members(self, dims: dict[str, str]) -> list[tuple[str, str]]:
        """``dims.event_members`` of the dims with the member cap applied."""
        row = self.member_row(dims)
        return [(d, m) for (d, _parts), m in zip(self.plan, row, strict=True) if m is not None]

    def member_row(self, dims: dict[str, str]) -> tuple[str | None, ...]:
        """The event's member per dimension (``None`` where it lacks one), the member cap
        applied, each member computed once per batch (same result and the same
        ``MemberCap.fold`` calls, in the same order, for every member not seen before: a kept
        member stays kept, and once the cap is full a new member is always ``other``)."""
        out: list[str | None] = []
        member_of = self.member_of
        for dim, parts in self.plan:
            if parts is None:
                out.append("all")
                continue
            if len(parts) == 1:
                raw: Any = dims.get(parts[0])
                if raw is None:
                    out.append(None)
                    continue
            else:
                raw = tuple(dims.get(part) for part in parts)
                if None in raw:
                    out.append(None)
                    continue
            member = member_of.get((dim, raw))
            if member is None:
                text = "+".join(clean(dims[part]) for part in parts)
                member = member_of[(dim, raw)] = self.cap.fold(dim, text)
            out.append(member)
        return tuple(out)

    def add(
        self,
        family: str,
        dims: dict[str, str],
        t: int,
        offset: int,
        token: Any,
        apply: Any,
        *args: Any,
    ) -> None:
        """Note the event for :meth:`fold_pending`: ``apply(counts, *args)`` on every live
        bucket of every member (``token``: the same contribution for the batched fold, or
        ``None`` when only ``apply`` can add it). The members and the watermark are taken now,
        in event order (the member cap depends on it)."""
        wm = self.wm if self.wm is not None else t
        self.pending.setdefault(family, []).append(
            (t, wm, offset, self.member_row(dims), token, apply, args)
        )

    def fold_pending(self) -> None:
        """Fold the batch's events into their buckets, family by family."""
        for family, evs in self.pending.items():
            if self.f.batched and self.fold_batched(family, evs):
                continue
            for t, wm, offset, row, _token, apply, args in evs:
                self.fold_one(family, t, wm, offset, row, apply, args)
        self.pending.clear()

    def fold_one(
        self, family: str, t: int, wm: int, offset: int, row: tuple[str | None, ...],
        apply: Any, args: tuple[Any, ...],
    ) -> None:  # fmt: skip
        """One event into its buckets, one ``apply`` per bucket: the reference fold, and the
        one a replay after a crash takes (each bucket's marker decides)."""
        live = []  # (window index, name, bucket) of the buckets some window can still read
        for i, name, g, spec in self.grid:
            b = t // g
            if b >= wm // g + 1 - BUCKETS_PER_WINDOW:  # spec.is_live(b, wm), inlined: per event
                live.append((i, name, spec, b))
        for (dim, _parts), member in zip(self.plan, row, strict=True):
            if member is None:
                continue
            cell = self.cell(family, dim, member)
            for i, name, spec, b in live:
                slots = cell[i]
                slot = slots.get(b)
                if slot is None:
                    key = f"{self.p}|k|{family}|{dim}|{member}|{name}|{b}"
                    slot = slots[b] = self.slot(family, key, spec, b, self.get(key))
                if slot[0] >= offset:
                    continue  # already folded before a restart
                apply(slot[1], *args)
                slot[0] = offset

    def fold_batched(self, family: str, evs: list[tuple[Any, ...]]) -> bool:
        """The same counts as :meth:`fold_one` for every event, from tallies: per dimension and
        window, ``Counter`` counts the events per (member, bucket, token) in C, and each count
        is added once (:meth:`add_tally`); CSAT and CES sums are added value by value in event
        order (:func:`streams.metrics.stats.add_values`), so the floats are bit for bit those
        of :meth:`fold_one`. Profile (2026-12-02): one ``apply`` per event, member and window
        (30 with the defaults) was half of the fold.

        Returns False, having changed nothing, when a bucket's marker is at or above the first
        event's offset (a replay after a crash: only :meth:`fold_one` skips per event) or an
        event has no token."""
        if family not in _TALLY:
            return False
        tokens = [e[4] for e in evs]
        if None in tokens:
            return False
        sums = family in ("csat", "ces")
        if sums:
            values = [tok[1] for tok in tokens]
            tokens = [tok[0] for tok in tokens]
        first = evs[0][2]
        ts = [e[0] for e in evs]
        t_lo, t_hi = min(ts), max(ts)
        last_wm = evs[-1][1]
        # Per window: the event's bucket, or None where no window can read it; or one int when
        # every event of the batch falls in the same live bucket (the long windows: a batch
        # spans seconds to minutes of event time), whose tallies are then those of the
        # dimension's (member, token) pairs, counted once for all such windows. (t // g is
        # monotonic in t: the lowest and highest buckets are those of the extreme times.)
        buckets: list[list[int | None] | int] = []
        for _i, _name, g, _spec in self.grid:
            lo, floor = t_lo // g, last_wm // g + 1 - BUCKETS_PER_WINDOW
            if lo == t_hi // g and lo >= floor:
                buckets.append(lo)
                continue
            bs: list[int | None] = [t // g for t in ts]
            if lo < floor:  # some event is late for it
                floors = [wm // g + 1 - BUCKETS_PER_WINDOW for _t, wm, *_ in evs]
                bs = [b if b is not None and b >= f else None
                      for b, f in zip(bs, floors, strict=True)]  # fmt: skip
            buckets.append(bs)
        columns = list(zip(*(e[3] for e in evs), strict=True))
        tallies = []  # (dimension, members, window index, counts of (member, bucket, token))
        for (dim, _parts), members in zip(self.plan, columns, strict=True):
            pairs: Counter[tuple[Any, Any]] | None = None
            for i, column in enumerate(buckets):
                if isinstance(column, int):
                    if pairs is None:
                        pairs = Counter(zip(members, tokens, strict=True))
                    tally: dict[tuple[Any, Any, Any], int] = {
                        (member, column, token): k for (member, token), k in pairs.items()
                    }
                else:
                    tally = Counter(zip(members, column, tokens, strict=True))
                tallies.append((dim, members, i, tally))
        # Load every bucket first: a replayed one sends the whole family to fold_one.
        loaded: dict[tuple[str, str, int, int], tuple[str, Any]] = {}
        p = self.p
        for dim, _members, i, tally in tallies:
            name = self.grid[i][1]
            for member, b, _token in tally:
                if member is None or b is None or (dim, member, i, b) in loaded:
                    continue
                key = f"{p}|k|{family}|{dim}|{member}|{name}|{b}"
                value = self.get(key)
                if value and value[0] >= first:
                    return False
                loaded[(dim, member, i, b)] = (key, value)
        grid = self.grid
        for (dim, member, i, b), (key, value) in loaded.items():
            self.cell(family, dim, member)[i][b] = self.slot(family, key, grid[i][3], b, value)
        tally_add = _TALLY[family]
        cells = self.cells
        by_member: dict[str, dict[Any, list[float]]] = {}  # CSAT/CES: dimension -> member -> xs
        for dim, members, i, tally in tallies:
            for (member, b, token), k in tally.items():
                if member is not None and b is not None:
                    tally_add(cells[(family, dim, member)][i][b][1], token, k)
            if sums:
                column = buckets[i]
                if isinstance(column, int):  # like the tallies: grouped once per dimension
                    if dim not in by_member:
                        by_member[dim] = _grouped(members, values)
                    by_slot = {(m, column): xs for m, xs in by_member[dim].items()}
                else:
                    by_slot = _grouped(zip(members, column, strict=True), values)
                for (member, b), xs in by_slot.items():
                    if member is not None and b is not None:
                        add_values(cells[(family, dim, member)][i][b][1], xs)
        return True

    def cell(self, family: str, dim: str, member: str) -> list[dict[int, list[Any]]]:
        cell = self.cells.get((family, dim, member))
        if cell is None:
            cell = self.cells[(family, dim, member)] = [{} for _ in self.grid]
        return cell

    def slot(self, family: str, key: str, spec: WindowSpec, b: int, value: Any) -> list[Any]:
        """A new bucket slot ``[marker, counts, key, spec, bucket]`` from its stored value."""
        cls = FAMILIES[family]
        slot = [value[0], cls.from_list(value[1])] if value else [-1, cls.empty()]
        slot += (key, spec, b)
        self.work.append(slot)
        return slot

    def materialize(self) -> None:
        """Counts objects of this batch -> the compact stored form, once per key.

        A bucket that died during the batch (no current or future window of this partition can
        read it at the batch's final watermark: exactly what :meth:`Folder.expired_keys` drops)
        is published but not stored. A replay of a day of history folds hundreds of
        short-window buckets per member in one batch; storing them made the state grow with
        replay speed until the next expiry. Stage 2 still gets them: its alert rules evaluate
        event-time steps up to the *lowest* partition watermark, which can be behind this
        one's (streams/aggregate.py, ``Merger._alert_ref``). Not storing is exact after a crash
        too: the stored value and its marker stay as of their last write, a replay refolds
        from there, and a snapshot is a cumulative count up to its marker, whatever batch
        produced it."""
        dirty = self.dirty
        wm = self.wm
        last = self.last_offset
        touched = self.out.touched
        scheduled = self.f.scheduled
        deaths = self.f.deaths
        for slot in self.work:
            marker, counts, key, spec, b = slot
            # Every record of the partition up to the batch's last offset is in the counts
            # (those that do not fall in this bucket too), whichever touched it last.
            value = [marker if marker > last else last, counts.to_list()]
            slot.append(value)
            touched.add(key)
            if wm is None or spec.is_live(b, wm):
                dirty[key] = value
                if key not in scheduled:
                    scheduled.add(key)
                    heapq.heappush(deaths.setdefault((self.p, spec.name), []), (b, key))
        self.work.clear()

    def expire_buckets(self) -> None:
        """Delete the stored buckets of this partition that the batch's watermark left dead
        for every current and future window (the rule of :meth:`Folder.expired_keys`), as
        they die: they are in event-time order per window (``Folder.deaths``).

        Before, only the expiry rounds (streams/agents/expiry.py) dropped them: a round found
        all the buckets that had died since the last one at once. After the 20k-event replay
        of ``cxpulse bench`` that was 28k buckets of the 5m window, and the few batches that
        deleted them held the latency phase's answers back (its p99). The rounds stay: they
        drop dedupe and interaction entries, and the buckets of a table restored after a
        restart, which no heap lists.

        A bucket this batch folded into is kept even if dead: were the batch replayed after a
        crash before its seal, its records would fold into that bucket again and must find
        its stored counts (the same holds for the rounds, see ``fold.py``)."""
        wm = self.wm
        if wm is None:
            return
        deaths, scheduled, dirty = self.f.deaths, self.f.scheduled, self.dirty
        touched = self.out.touched  # every bucket the batch stored is among them
        table = self.f.table
        for _i, name, _g, spec in self.grid:
            heap = deaths.get((self.p, name))
            while heap and not spec.is_live(heap[0][0], wm):
                _b, key = heapq.heappop(heap)
                scheduled.discard(key)
                if key not in touched and table.get(key) is not None:
                    dirty[key] = None

    def survey(self, e: ev.Survey, offset: int) -> None:
        lo, hi = e.scale_min, e.scale_max
        score, t = e.score, e.t_ms
        if e.survey == "nps":
            cat = NpsCounts.token(score)
            self.add("nps", e.dims, t, offset, cat, NpsCounts.add, score)
        elif e.survey == "csat":
            tok = CsatCounts.token(score, lo, hi)
            self.add("csat", e.dims, t, offset, tok, CsatCounts.add, score, lo, hi)
            cat = tok[0]
        else:
            tok = CesCounts.token(score, lo, hi)
            self.add("ces", e.dims, t, offset, tok, CesCounts.add, score, lo, hi)
            cat = tok[0]
        self.out.responses.append((e.survey, cat, e.dims["segment"], e.dims["channel"]))
        if cat in ("detractor", "dissatisfied") and e.survey in ("nps", "csat"):
            self.out.followups.append(
                {
                    "followup_id": e.event_id,
                    "customer_id": e.customer_id,
                    "survey": e.survey,
                    "score": e.score,
                    "category": cat,
                    "comment": e.comment,
                    "occurred_at": iso(e.t_ms),
                    "dimensions": dict(e.dims),
                    "emitted_at": iso(self.now_ms),
                }
            )

    def support(self, e: ev.Support, offset: int) -> None:
        # state: [marker, opened_ms, offset of the first response or -1, last event time]
        ikey = f"{self.p}|i|{e.interaction_id}"
        state = self.get(ikey) or [-1, None, -1, e.t_ms]
        replayed = state[0] >= offset
        opened = e.opened_at_ms if e.opened_at_ms is not None else state[1]
        status = e.status
        first_response: float | None = None
        resolution: float | None = None
        first_offset = state[2]
        if status == "responded" and first_offset in (-1, offset):
            first_offset = offset
            if opened is not None:
                first_response = max(0.0, (e.t_ms - opened) / 1000)
        elif status == "resolved" and opened is not None:
            resolution = max(0.0, (e.t_ms - opened) / 1000)
        if not replayed:
            new_opened = state[1]
            if new_opened is None:
                new_opened = e.t_ms if status == "opened" else e.opened_at_ms
            self.dirty[ikey] = [offset, new_opened, first_offset, max(state[3], e.t_ms)]

        t = e.t_ms
        if status == "opened":
            tok = SupportCounts.token(status, None)
            self.add("support", e.dims, t, offset, tok, SupportCounts.add_opened)
        elif status == "responded":
            tok = SupportCounts.token(status, first_response)
            self.add("support", e.dims, t, offset, tok, SupportCounts.add_responded, first_response)
        elif status == "resolved":
            tok = SupportCounts.token(status, resolution)
            self.add("support", e.dims, t, offset, tok, SupportCounts.add_resolved, resolution)
        else:
            tok = SupportCounts.token(status, None)
            self.add("support", e.dims, t, offset, tok, SupportCounts.add_reopened)
        channel = e.dims["channel"]
        if first_response is not None:
            self.out.latencies.append(("first_response", channel, first_response))
        if resolution is not None:
            self.out.latencies.append(("resolution", channel, resolution))

    def cancellation(self, e: ev.Cancellation, offset: int) -> None:
        self.add("churn", e.dims, e.t_ms, offset, None, ChurnCounts.add, e.mrr)  # float sums
        self.out.cancellations.append((e.dims["segment"], e.mrr))

    def customer(self, e: ev.Customer, offset: int) -> None:
        # state: [marker, active, members, previous active, previous members]; the previous
        # values let a replay recompute the change for active counts it had not yet written.
        ckey = f"{self.p}|c|{e.customer_id}"
        state = self.get(ckey)
        if state is not None and state[0] >= offset:
            prev_active, prev_members = state[3], state[4]
        else:
            prev_active, prev_members = (state[1], state[2]) if state is not None else (0, [])
        members = [[dim, member] for dim, member in self.members(e.dims)]
        active = 1 if e.status == "active" else 0
        changes: Counter[tuple[str, str]] = Counter()
        if prev_active:
            for dim, member in prev_members:
                changes[(dim, member)] -= 1
        if active:
            for dim, member in members:
                changes[(dim, member)] += 1
        for (dim, member), delta in changes.items():
            akey = f"{self.p}|a|{dim}|{member}"
            self.active_touched.add((dim, member))
            cur = self.get(akey) or [-1, 0]
            if cur[0] < offset:
                self.dirty[akey] = [offset, cur[1] + delta]
        if state is None or state[0] < offset:
            self.dirty[ckey] = [offset, active, members, prev_active, prev_members]

    # -- publishing to stage 2 -----------------------------------------------------------
    def publish(self) -> None:
        src = f"{self.f.topic}:{self.p}"
        by_name = self.by_name
        names = [w.name for w in self.f.windows]
        for (family, dim, member), cell in self.cells.items():
            rows = []
            for i in by_name:
                slots = cell[i]
                w = names[i]
                for b in sorted(slots):
                    value = slots[b][5]
                    rows.append([w, b, value[0], value[1]])
            self.out.partials.append(
                (f"{family}|{dim}|{member}", {"s": src, "wm": self.wm, "b": rows})
            )
        for dim, member in sorted(self.active_touched):
            value = self.get(f"{self.p}|a|{dim}|{member}")
            if value is not None:
                self.out.partials.append(
                    (f"churn|{dim}|{member}", {"s": src, "wm": None, "b": [], "a": value})
                )
