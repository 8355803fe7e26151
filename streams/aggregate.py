"""Stage 2: merge per-partition snapshots into global windows and produce score records.

Pure of Faust, like :mod:`streams.state`. Key layout of the ``merge`` table (the changelog
partition of every key is :func:`partition_of` its ``family|dim|member`` part):

====================================  ===============================================
``{family}|{dim}|{member}|{w}|{b}``   ``{source: [marker, counts]}`` latest snapshots
``{family}|{dim}|{member}|#a``        ``{source: [marker, active]}`` (churn base)
``{family}|{dim}|{member}|#r``        ``{"metric|window": revision}``
``#wm|{q}``                           ``{topic: {source: watermark}, "#o": offset}``, written
                                     last (seal); ``#o``: the last partials offset of ``q``
                                     applied (streams/agents/gaps.py)
====================================  ===============================================

Snapshots are cumulative per source partition, so applying one twice, or an older one after a
newer one, changes nothing: that is what makes the merge exact under redelivery.
"""

from __future__ import annotations

import contextlib
import heapq
import time
import zlib
from bisect import bisect_left
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, cast

from streams.alerting import AlertEngine, Transition
from streams.metrics.scores import family_scores
from streams.metrics.stats import FAMILIES
from streams.state import FAMILY_TOPIC
from streams.windows import BUCKETS_PER_WINDOW, WindowSpec, iso

Member = tuple[str, str, str]  # family, dimension, member


def partition_of(member_key: str, partitions: int) -> int:
    """Stable partition of ``family|dim|member`` (same on every worker and release)."""
    return zlib.crc32(member_key.encode()) % partitions


OFFSET = "#o"  # in the seal value: the last partials offset applied
PREFIX = BUCKETS_PER_WINDOW - 2  # Merger.window_sum caches the sum of a window's first buckets
_BEFORE_ALL = -(1 << 62)  # an event time before every bucket: keeps them all


# (family|dim|member, partitions) -> its partition: the stage-2 table names one for every
# changelog write (~1 per event), and members are few (bounded by max_members per dimension)
_MEMBER_PARTITIONS: dict[tuple[str, int], int] = {}


def table_partition(key: str, partitions: int) -> int:
    if key.startswith("#wm|"):
        return int(key[4:])
    end = key.find("|", key.find("|", key.find("|") + 1) + 1)  # after family|dim|member
    member_key = key if end < 0 else key[:end]
    q = _MEMBER_PARTITIONS.get((member_key, partitions))
    if q is None:
        if member_key.count("|") != 2:
            raise ValueError(f"not a merge table key: {key!r}")
        q = partition_of(member_key, partitions)
        if len(_MEMBER_PARTITIONS) >= 100_000:
            _MEMBER_PARTITIONS.clear()
        _MEMBER_PARTITIONS[(member_key, partitions)] = q
    return q


@dataclass
class Emission:
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    alerts: list[Transition] = field(default_factory=list)
    firing: list[tuple[str, str, str, bool]] = field(default_factory=list)  # rule, dim, member
    gauges: list[tuple[Member, tuple[str, str, str, str], float | None, int, Any, Any]] = field(
        default_factory=list
    )
    processing_s: list[float] = field(default_factory=list)
    partitions: set[int] = field(default_factory=set)


class Merger:
    def __init__(
        self,
        table: MutableMapping[str, Any],
        windows: tuple[WindowSpec, ...],
        *,
        partitions: int,
        min_sample: int,
        emit_interval_ms: int = 1000,
        alerts: AlertEngine | None = None,
        track_idle: bool = True,
        backlog_interval_ms: int = 0,
        live_ms: int = 2000,
    ) -> None:
        self.alerts = alerts
        # A member whose pending input was ingested more than ``live_ms`` ago (a replay, a
        # backlog: its scores are on their way to the present) or that is due only because a
        # window slid is evaluated at most every ``backlog_interval_ms`` (when longer than the
        # emit interval); live input at the emit interval (:meth:`due`).
        self.backlog_interval_ms = backlog_interval_ms
        self.live_ms = live_ms
        self.track_idle = track_idle
        self.spec = {w.name: w for w in windows}
        # (member, window) -> (first bucket, counts of the window's first PREFIX buckets): see
        # bucket_sum(). Forgotten when one of those buckets changes (apply, drop), on restore,
        # and when the table was written from its changelog (``recovered`` of MergeTable).
        self._sums: dict[tuple[Member, str], tuple[int, Any]] = {}
        self._sums_gen = 0
        # (member, window) -> the buckets the table may hold for it, sorted: a superset (a
        # bucket dropped behind our back stays listed; reading it finds nothing), so a sum
        # reads only those instead of probing every bucket of its range (profile 2026-12-03:
        # ~3 of 4 reads of a replay found no bucket). Rebuilt from the table's keys with the
        # window sums.
        self._index: dict[tuple[Member, str], list[int]] | None = None
        # (member, window) -> {(bucket key, source): (stored counts list, parsed counts)} of
        # the window's newest buckets, the ones :meth:`window_sum` reads on every evaluation:
        # a source's snapshot is parsed again only once that source sent a newer one (profile
        # 2026-12-03: parsing them was ~6% of the worker's main thread). Taken by identity of
        # the stored list (held here, so never reused): RocksDB, which decodes anew on every
        # read, never hits. Each sum replaces its window's entries with the ones it read, so
        # this holds no more than the newest buckets of each member and window (a first
        # version, keyed by bucket and cleared only at 50k entries, kept the buckets the
        # windows had moved past).
        self._newest: dict[tuple[Member, str], dict[tuple[str, str], tuple[Any, Any]]] = {}
        # bucket key -> its counts merged over its sources, as :meth:`_bucket` last summed
        # them; forgotten when the bucket changes (apply, drop) and with the window sums. A
        # replay slides the 5m window by a bucket or two between two evaluations of a member,
        # so its cached prefix sum (``_sums``) seldom holds and every sum read all 60 buckets
        # again, each source parsed anew (profile 2026-12-07: ~5% of the worker's main thread
        # in a 1M replay). Callers only read the cached counts (``iadd`` of another).
        self._merged: dict[str, Any] = {}
        self._wm_seen: dict[tuple[str, str], int] = {}  # (topic, source) -> wall ms of last news
        # (family, window) -> heap of (bucket, key) of the buckets stored since start, for the
        # windows the alert rules do not read (whose buckets die by the watermark alone):
        # :meth:`expire_dead_buckets` drops them as they die.
        self._deaths: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self.table = table
        self.windows = windows
        self.partitions = partitions
        self.min_sample = min_sample
        self.emit_interval_ms = emit_interval_ms
        self.members: set[Member] = set()
        self.dirty: dict[Member, int | None] = {}  # member -> earliest ingest ms pending
        self.last_emit: dict[Member, int] = {}
        self.signatures: dict[str, tuple[Any, ...]] = {}
        self.watermarks: dict[str, dict[str, int]] = {}
        self._window_ends: dict[tuple[str, str], int] = {}
        config = alerts.config if alerts is not None else None
        self._alert_families = config.families() if config is not None else set()
        self._alert_windows = (
            {config.short_window, config.baseline_window} if config is not None else set()
        )
        # how far before a member's last rule step its rules may still read (see _alert_ref)
        self._alert_lookback = (
            2 * self.spec[config.short_window].size_ms
            + config.for_ms
            + 2 * config.step_ms
            + self.spec[config.baseline_window].granularity_ms
            if config is not None
            else 0
        )

    # -- input -----------------------------------------------------------------------
    def apply(
        self, key: str, value: dict[str, Any], partition: int, now_ms: int | None = None
    ) -> None:
        if "wm_topic" in value:
            self._watermark(value["wm_topic"], value["s"], value["wm"], partition)
            if now_ms is not None:
                self._wm_seen[(value["wm_topic"], value["s"])] = now_ms
            return
        family, dim, member = key.split("|")
        src = value["s"]
        wm = self.watermark(family)
        alert_ref = self._alert_ref((family, dim, member)) if wm is not None else None
        for w, b, marker, counts in value["b"]:
            if wm is not None and not self._is_live(w, b, wm, alert_ref):
                continue  # dead on arrival (a lagging partition): what expiry would drop
            bkey = f"{key}|{w}|{b}"
            cur = self.table.get(bkey) or {}
            old = cur.get(src)
            if old is None or old[0] < marker:
                if not cur and w not in self._alert_windows:
                    heapq.heappush(self._deaths.setdefault((family, w), []), (b, bkey))
                self.table[bkey] = {**cur, src: [marker, counts]}
                self._merged.pop(bkey, None)
                self._forget_sum((family, dim, member), w, b)
                if self._index is not None:
                    present = self._index.setdefault(((family, dim, member), w), [])
                    if not present or present[-1] < b:  # mostly: a new newest bucket
                        present.append(b)
                    else:
                        i = bisect_left(present, b)
                        if i == len(present) or present[i] != b:
                            present.insert(i, b)
        if "a" in value:
            akey = f"{key}|#a"
            cur = self.table.get(akey) or {}
            old = cur.get(src)
            if old is None or old[0] < value["a"][0]:
                self.table[akey] = {**cur, src: value["a"]}
        m = (family, dim, member)
        self.members.add(m)
        ts = value.get("ts")
        prev = self.dirty.get(m)
        self.dirty[m] = ts if prev is None else (prev if ts is None else min(prev, ts))

    def _watermark(self, topic: str, src: str, wm: int, partition: int) -> None:
        known = self.watermarks.setdefault(topic, {})
        if wm > known.get(src, -1):
            known[src] = wm

    def seal_value(self) -> dict[str, dict[str, int]]:
        return {t: dict(s) for t, s in self.watermarks.items()}

    def restore(self, owned: set[int]) -> None:
        """Rebuild the in-memory member registry and watermarks from the table."""
        self._sums.clear()
        self._index = None
        self._newest.clear()
        self._merged.clear()
        self.members = set()
        for key in list(self.table.keys()):
            if key.startswith("#wm|"):
                for topic, srcs in (self.table.get(key) or {}).items():
                    if topic == OFFSET:
                        continue
                    for src, wm in srcs.items():
                        self._watermark(topic, src, wm, int(key[4:]))
                continue
            family, dim, member = key.split("|", 3)[:3]
            if partition_of(f"{family}|{dim}|{member}", self.partitions) in owned:
                self.members.add((family, dim, member))
        self.members = {m for m in self.members if m[0] in FAMILIES}
        for m in self.members:
            self.dirty.setdefault(m, None)

    def watermark(self, family: str) -> int | None:
        srcs = self.watermarks.get(FAMILY_TOPIC[family])
        return max(srcs.values()) if srcs else None

    # -- output ----------------------------------------------------------------------
    def _mark_slid_windows(self) -> None:
        """A window whose end moved makes every member of its family due."""
        for family in FAMILY_TOPIC:
            wm = self.watermark(family)
            if wm is None:
                continue
            for w in self.windows:
                end = w.end_bucket(wm)
                if self._window_ends.get((family, w.name)) != end:
                    self._window_ends[(family, w.name)] = end
                    for m in self.members:
                        if m[0] == family:
                            self.dirty.setdefault(m, None)

    def due(
        self,
        now_ms: int,
        owned: set[int],
        force: bool = False,
        budget_s: float | None = None,
        live_since: int | None = None,
    ) -> Emission:
        """Score records for due members (throttled per member unless ``force``).

        Members with new input come first, oldest input first, then those whose windows only
        slid. ``budget_s``: once that much time went to the latter, the rest of them wait for
        the next call (those with new input are all evaluated, as they are throttled anyway);
        ``live_since``: only the members whose new input was ingested at or after it (ms), and
        none of the others: the merge agent's call right after it applied partials, for live
        input; input of a replay or a backlog is left to the tick, which coalesces it.
        A window slide makes every member of its family due at once (the 5m window every 5 s
        of event time): evaluating them all in one go held the event loop for 50-120 ms at the
        bench's size, and the answers that came in meanwhile waited that much longer for their
        score (their p99)."""
        self._mark_slid_windows()
        out = Emission()
        dirty = self.dirty
        if live_since is None:
            order = [m for m, ts in dirty.items() if ts is not None]
        else:
            order = [m for m, ts in dirty.items() if ts is not None and ts >= live_since]
        if len(order) > 1:
            order.sort(key=lambda m: cast(int, dirty[m]))  # stable: insertion order on ties
        fresh = len(order)
        if live_since is None:
            order += [m for m, ts in dirty.items() if ts is None]
        deadline = None
        for i, m in enumerate(order):
            if i >= fresh and budget_s is not None:
                if deadline is None:  # counted from here: a busy call still makes progress
                    deadline = time.perf_counter() + budget_s
                elif time.perf_counter() > deadline:
                    break
            q = partition_of("|".join(m), self.partitions)
            if q not in owned:
                self.dirty.pop(m, None)
                continue
            ts = dirty[m]
            interval = self.emit_interval_ms
            if ts is None or ts < now_ms - self.live_ms:
                interval = max(interval, self.backlog_interval_ms)
            if not force and now_ms - self.last_emit.get(m, -(10**15)) < interval:
                continue
            del dirty[m]
            if self.evaluate(m, now_ms, out):
                out.partitions.add(q)
            self.last_emit[m] = now_ms
            if ts is not None:
                out.processing_s.append(max(0.0, (now_ms - ts) / 1000))
        return out

    def window_counts(self, m: Member, w: WindowSpec, wm: int) -> Any:
        return self.window_sum(m, w, w.end_bucket(wm))

    def window_sum(self, m: Member, w: WindowSpec, end_bucket: int) -> Any:
        """:meth:`bucket_sum`, from the cached sum of the window's first :data:`PREFIX` buckets
        when they are unchanged since (the newest buckets are the ones that keep changing).
        The same additions in the same order: bit for bit the full sum. A window's buckets
        move on every ``granularity`` of event time (5 s for 5m, 12 h for 30d), so a replay
        still sums the short windows in full, and a live worker re-sums the 5m window once
        per 5 s instead of once per emission (profile 2026-12-02: summing was ~2/3 of stage
        2's score evaluation)."""
        self._check_recovered()
        start = end_bucket - BUCKETS_PER_WINDOW
        first = start + PREFIX
        cached = self._sums.get((m, w.name))
        if cached is not None and cached[0] == start:
            counts = cached[1].copy()
        else:
            counts = self._add_buckets(FAMILIES[m[0]].empty(), m, w, start, first)
            self._sums[(m, w.name)] = (start, counts.copy())
        fresh: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._add_buckets(
            counts, m, w, first, end_bucket, (self._newest.get((m, w.name), {}), fresh)
        )
        self._newest[(m, w.name)] = fresh
        return counts

    def _check_recovered(self) -> None:
        """Forget what was derived from the table once its changelog wrote into it."""
        gen = getattr(self.table, "recovered", 0)
        if gen != self._sums_gen:
            self._sums.clear()
            self._index = None
            self._newest.clear()
            self._merged.clear()
            self._sums_gen = gen

    def _present(self, m: Member, window: str, start: int, end: int) -> list[int]:
        """The buckets ``start`` .. ``end - 1`` of ``m`` in ``window`` the table may hold."""
        index = self._index
        if index is None:
            found: dict[tuple[Member, str], set[int]] = {}
            for key in list(self.table.keys()):
                parts = key.split("|")
                if len(parts) == 5 and parts[3] in self.spec and parts[0] in FAMILIES:
                    with contextlib.suppress(ValueError):
                        b = int(parts[4])
                        found.setdefault(((parts[0], parts[1], parts[2]), parts[3]), set()).add(b)
            index = self._index = {mw: sorted(bs) for mw, bs in found.items()}
        present = index.get((m, window))
        if not present:
            return []
        return present[bisect_left(present, start) : bisect_left(present, end)]

    def _forget_sum(self, m: Member, window: str, bucket: int) -> None:
        cached = self._sums.get((m, window))
        if cached is not None and bucket < cached[0] + PREFIX:
            del self._sums[(m, window)]

    def active(self, m: Member) -> int | None:
        snap = self.table.get(f"{m[0]}|{m[1]}|{m[2]}|#a")
        if not snap:
            return None
        return sum(v[1] for v in snap.values())

    def evaluate(self, m: Member, now_ms: int, out: Emission) -> bool:
        family, dim, member = m
        wm = self.watermark(family)
        if wm is None:
            return False
        rkey = f"{family}|{dim}|{member}|#r"
        revisions = dict(self.table.get(rkey) or {})
        changed = False
        active = self.active(m) if family == "churn" else None
        for w in self.windows:
            counts = self.window_counts(m, w, wm)
            start, end = w.bounds(wm)
            # once per window, not per metric (support: 7 metrics, each to_list sorts histograms)
            as_list = counts.to_list()
            counts_dict: dict[str, Any] | None = None  # shared by the window's records
            for metric, score, definition in family_scores(family, counts, self.min_sample, active):
                skey = f"{metric}|{w.name}|{dim}={member}"
                signature = (start, score, as_list, active)
                if self.signatures.get(skey) == signature:
                    continue
                if counts_dict is None:
                    counts_dict = counts.to_dict() | (
                        {"active_customers": active} if active is not None else {}
                    )
                self.signatures[skey] = signature
                rev = revisions.get(f"{metric}|{w.name}", -1) + 1
                revisions[f"{metric}|{w.name}"] = rev
                changed = True
                record = {
                    "metric": metric,
                    "window": w.name,
                    "window_start": iso(start),
                    "window_end": iso(end),
                    "dimension": dim,
                    "member": member,
                    "value": score.value,
                    "n": score.n,
                    "ci95_low": score.ci95_low,
                    "ci95_high": score.ci95_high,
                    "counts": counts_dict,
                    "revision": rev,
                    "as_of": iso(wm),
                    "emitted_at": iso(now_ms),
                    "definition": definition,
                }
                out.records.append((skey, record))
                out.gauges.append(
                    (
                        m,
                        (metric, w.name, dim, member),
                        score.value,
                        score.n,
                        score.ci95_low,
                        score.ci95_high,
                    )
                )
        if changed:
            self.table[rkey] = revisions
        if self.alerts is not None and family in self.alerts.config.families():
            self._alerts(m, now_ms, out)
        return changed

    def _alerts(self, m: Member, now_ms: int, out: Emission) -> None:
        """Evaluate the member's rules at every step boundary passed since the last time."""
        assert self.alerts is not None
        config = self.alerts.config
        low = self.low_watermark(m[0], now_ms if self.track_idle else None)
        if low is None:
            return
        ekey = f"{m[0]}|{m[1]}|{m[2]}|#e"
        states = dict(self.table.get(ekey) or {})
        before = dict(states)
        step = config.step_ms
        target = low // step * step
        last = states.get("_step")
        if last is None:
            # A member seen for the first time: its recent past is enough (one short window
            # plus the persistence time); evaluating a week of empty steps blocked the worker.
            first = target - (self.spec[config.short_window].size_ms + config.for_ms) // step * step
        else:
            first = max(target - (config.max_steps - 1) * step, last + step)
        short_w, base_w = self.spec[config.short_window], self.spec[config.baseline_window]
        firing: dict[str, bool] = {}
        for e in range(first, target + 1, step):
            short = self.bucket_sum(m, short_w, e // short_w.granularity_ms)
            # the baseline: complete baseline-grid buckets that end before the short window
            base = self.bucket_sum(m, base_w, (e - short_w.size_ms) // base_w.granularity_ms)
            transitions, firing = self.alerts.evaluate(m, short, base, states, e, now_ms)
            out.alerts.extend(transitions)
        if target >= first:
            states["_step"] = target
        if states != before:
            self.table[ekey] = states
        if not firing:
            firing = {
                rule: bool(v[0])
                for rule, v in states.items()
                if not rule.startswith("_") and ":" not in rule
            }
        out.firing.extend((rule, m[1], m[2], on) for rule, on in firing.items())

    def bucket_sum(self, m: Member, w: WindowSpec, end_bucket: int) -> Any:
        """Counts of the 60 buckets of ``w`` before ``end_bucket`` (exclusive)."""
        self._check_recovered()
        empty = FAMILIES[m[0]].empty()
        return self._add_buckets(empty, m, w, end_bucket - BUCKETS_PER_WINDOW, end_bucket)

    def _add_buckets(
        self, counts: Any, m: Member, w: WindowSpec, start: int, end: int,
        parsed: tuple[dict[tuple[str, str], Any], dict[tuple[str, str], Any]] | None = None,
    ) -> Any:  # fmt: skip
        """``counts`` plus the buckets ``start`` .. ``end - 1`` of ``w``, added in that order."""
        cls: Any = FAMILIES[m[0]]
        prefix = f"{m[0]}|{m[1]}|{m[2]}|{w.name}|"
        for b in self._present(m, w.name, start, end):
            bucket = self._bucket(f"{prefix}{b}", cls, parsed)
            if bucket is not None:
                counts.iadd(bucket)
        return counts

    def _bucket(
        self, key: str, cls: Any,
        parsed: tuple[dict[tuple[str, str], Any], dict[tuple[str, str], Any]] | None = None,
    ) -> Any:  # fmt: skip
        """The merged counts of one bucket over its sources. ``parsed``: (the snapshots parsed
        before, where this one's go), see ``Merger._newest``.

        No cache of every bucket: one (up to 200k, by stored value) stopped paying once window
        sums were cached (:meth:`window_sum` reads only the newest buckets, which keep
        changing). 300k bench, three interleaved runs each: the same throughput (median
        11,928 with the cache, 12,157 ev/s without), peak RSS 338 -> 320 MB; with RocksDB,
        which decodes a new object on every read, it could never hit. What is kept is the
        newest buckets' sources that did not change (``parsed``)."""
        total = self._merged.get(key)
        if total is not None:
            return total
        snap = self.table.get(key)
        if not snap:
            return None
        total = cls.empty()
        if parsed is None:
            for src in sorted(snap):
                total.iadd(cls.from_list(snap[src][1]))
        else:
            before, fresh = parsed
            for src in sorted(snap):
                stored = snap[src][1]
                hit = before.get((key, src))
                if hit is None or hit[0] is not stored:
                    hit = (stored, cls.from_list(stored))
                fresh[(key, src)] = hit
                total.iadd(hit[1])  # iadd reads it, never changes it
        self._merged[key] = total
        return total

    def low_watermark(
        self, family: str, now_ms: int | None = None, idle_ms: int = 30_000
    ) -> int | None:
        """The lowest source-partition watermark: events before it have been folded by every
        partition (inputs are in time order per partition). A partition that sent no watermark
        for ``idle_ms`` of *wall* time while behind the others is idle and ignored, or an idle
        partition would hold alerts back forever; a merely lagging one (a replay) is waited
        for, so replays give the alerts live traffic gives."""
        topic = FAMILY_TOPIC[family]
        srcs = self.watermarks.get(topic)
        if not srcs:
            return None
        high = max(srcs.values())
        live = [
            wm for src, wm in srcs.items()
            if wm >= high or now_ms is None
            or now_ms - self._wm_seen.get((topic, src), now_ms) < idle_ms
        ]  # fmt: skip
        return min(live)

    def _alert_ref(self, m: Member) -> int | None:
        """For the alert rules' two windows, the watermark at which a bucket of ``m`` is dead:
        early enough that every bucket a future rule step of ``m`` reads is live at it. Rules
        evaluate event-time steps after the member's last one up to the *lowest* partition
        watermark (``_alerts``), so in a replay they read buckets that the family's (highest)
        watermark has long left behind. None: no rule reads ``m``'s family."""
        if m[0] not in self._alert_families:
            return None
        states = self.table.get(f"{m[0]}|{m[1]}|{m[2]}|#e") or {}
        last = states.get("_step")
        if last is None:  # a new member looks back from the lowest watermark (see _alerts)
            srcs = self.watermarks.get(FAMILY_TOPIC[m[0]], {})
            if len(srcs) < self.partitions:
                return _BEFORE_ALL  # a partition not heard from yet may be far behind
            last = min(srcs.values())
        return int(last) - self._alert_lookback

    def _is_live(self, window: str, bucket: int, wm: int, alert_ref: int | None) -> bool:
        """Whether a bucket is still read: by a window at ``wm``, or, for the alert windows,
        by a future rule step (``alert_ref`` from :meth:`_alert_ref`)."""
        ref = wm if alert_ref is None or window not in self._alert_windows else alert_ref
        return self.spec[window].is_live(bucket, ref)

    def drop(self, key: str) -> None:
        """Delete an expired key (and forget the cached window sum it was part of)."""
        self.table.pop(key, None)
        self._merged.pop(key, None)
        parts = key.split("|")
        if len(parts) == 5 and parts[4].lstrip("-").isdigit():
            m, b = (parts[0], parts[1], parts[2]), int(parts[4])
            self._forget_sum(m, parts[3], b)
            present = self._index.get((m, parts[3])) if self._index is not None else None
            if present:
                i = bisect_left(present, b)
                if i < len(present) and present[i] == b:
                    del present[i]

    def expire_dead_buckets(self, owned: set[int]) -> set[int]:
        """Drop the stored buckets that the family's watermark left dead, as they die, for
        the windows no alert rule reads; returns the table partitions written.

        Before, only the expiry rounds dropped them, all the buckets that died since the
        last round at once: after the 20k-event replay of ``cxpulse bench``, ~10k buckets
        of the 5m window, ~35 ms of drops per tick for a second and a half, which the latency
        phase's answers waited for. The rounds stay, for the alert windows, the other keys
        and a table restored after a restart (no heap lists its buckets)."""
        written: set[int] = set()
        for (family, window), heap in self._deaths.items():
            if not heap:
                continue
            wm = self.watermark(family)
            if wm is None:
                continue
            spec = self.spec[window]
            while heap and not spec.is_live(heap[0][0], wm):  # _is_live of a non-alert window
                _b, key = heapq.heappop(heap)
                q = table_partition(key, self.partitions)
                if q in owned and key in self.table:
                    self.drop(key)
                    written.add(q)
        return written

    def expired_keys(self, owned: set[int], keys: list[str] | None = None) -> list[str]:
        """Keys of ``owned`` partitions that no window can read any more, among ``keys``
        (default: the whole table; the agent passes chunks, ``ExpiryScan``)."""
        refs: dict[Member, tuple[int | None, int | None]] = {}  # member -> (wm, alert ref)
        dead = []
        for key in list(self.table.keys()) if keys is None else keys:
            parts = key.split("|")
            if len(parts) != 5 or parts[3] not in self.spec or parts[0] not in FAMILY_TOPIC:
                continue
            m = (parts[0], parts[1], parts[2])
            ref = refs.get(m)
            if ref is None:
                wm = self.watermark(m[0])
                ref = refs[m] = (wm, None if wm is None else self._alert_ref(m))
            wm, alert_ref = ref
            if (
                wm is not None
                and not self._is_live(parts[3], int(parts[4]), wm, alert_ref)
                and table_partition(key, self.partitions) in owned
            ):
                dead.append(key)
        return dead
