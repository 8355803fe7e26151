"""The batched fold (``_PartitionBatch.fold_batched``) gives bit for bit what the reference fold
(one ``apply`` per event, member and bucket: ``fold_one``) gives: same writes, same partials,
same outcomes, on the bench's own workload (late and duplicate events, 1-10 CSAT scales), and
after a crash, where it must hand the replayed family to the reference fold."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from streams import state
from streams.bench import build_workload
from streams.metrics.stats import CesCounts, CsatCounts, NpsCounts, SupportCounts, add_values
from streams.settings import DEFAULT_DIMENSIONS, DEFAULT_WINDOWS, Settings
from streams.state import Folder, Record
from streams.topics import INPUTS
from streams.windows import window_specs
from tests.folding import apply_writes as _apply
from tests.folding import fold_support

END = 1_790_000_000_000
S = Settings()
WINDOWS = window_specs(S.window_seconds)
DIMS = (*DEFAULT_DIMENSIONS, "segment+channel")


def _records(seed: int, n: int = 6000, partitions: int = 2) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {t: [] for t in INPUTS}
    offsets: dict[tuple[str, int], int] = {}
    for topic, key, value in build_workload(seed, n, END, S.late_after_s).messages:
        p = sum(key or b"") % partitions
        o = offsets.get((topic, p), 0)
        offsets[(topic, p)] = o + 1
        out[topic].append(Record(p, o, value, END, key))
    return out


def _folder(topic: str, table: dict[str, Any], batched: bool) -> Folder:
    folder = Folder(topic, table, WINDOWS, DIMS, retention_ms=S.retention_s * 1000,
                    late_ms=S.late_after_s * 1000)  # fmt: skip
    folder.batched = batched
    return folder


def _result(out: state.BatchResult) -> tuple[Any, ...]:
    return (out.writes, out.progress, sorted(out.partials, key=lambda kv: (kv[0], str(kv[1]))),
            dict(out.outcomes), out.dead_letters, out.followups, out.watermarks,
            out.responses, out.cancellations, out.latencies)  # fmt: skip


class _Spy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.one = self.batched = 0
        one, batched = state._PartitionBatch.fold_one, state._PartitionBatch.fold_batched

        def spy_one(pb: Any, *args: Any) -> None:
            self.one += 1
            one(pb, *args)

        def spy_batched(pb: Any, *args: Any) -> bool:
            took = batched(pb, *args)
            self.batched += took
            return took

        monkeypatch.setattr(state._PartitionBatch, "fold_one", spy_one)
        monkeypatch.setattr(state._PartitionBatch, "fold_batched", spy_batched)


def test_the_workload_has_what_the_batched_fold_must_get_right() -> None:
    records = _records(1)
    assert DEFAULT_WINDOWS == ("5m", "1h", "24h", "7d", "30d")
    surveys = [r.raw for r in records["cx.survey-responses"]]
    assert sum(b'"scale_max":10' in (raw or b"") for raw in surveys) > 10  # 1-10 CSAT: floats
    out = _folder("cx.survey-responses", {}, True).fold(records["cx.survey-responses"], END)
    assert out.outcomes["late"] > 10 and out.outcomes["duplicate"] > 10


@pytest.mark.parametrize("topic", INPUTS)
@pytest.mark.parametrize("seed", [1, 2])
def test_batched_fold_equals_the_reference_fold(
    topic: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy(monkeypatch)
    records = _records(seed, 30_000 if topic == "cx.cancellations" else 6000)[topic]
    rng = random.Random(seed)
    tables: dict[bool, dict[str, Any]] = {True: {}, False: {}}
    folders = {b: _folder(topic, tables[b], b) for b in (True, False)}
    i = batches = 0
    while i < len(records):
        size = rng.choice([1, 7, max(2, len(records) // 20), max(2, len(records) // 4)])
        got = {}
        for b in (True, False):
            out = folders[b].fold(records[i : i + size], END)
            _apply(tables[b], out.state_writes())
            _apply(tables[b], out.progress)
            got[b] = _result(out)
        assert got[True] == got[False], f"batch at {i}, size {size}"
        i += size
        batches += 1
    assert tables[True] == tables[False]
    assert len(records) > 10 and batches >= 3
    if topic in ("cx.survey-responses", "cx.support-interactions"):
        assert spy.batched > batches  # a call per family and partition: the path is taken
    if topic == "cx.cancellations":
        assert spy.batched == 0  # churn sums MRR floats: only fold_one adds them


@pytest.mark.parametrize("topic", ["cx.survey-responses", "cx.support-interactions"])
def test_a_replay_after_a_crash_goes_to_the_reference_fold(
    topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after part of a batch's state was written, before its seal: the same records
    come again, and only the per-event marker check can skip what the stored buckets hold."""
    records = _records(3)[topic][:2000]
    tables: dict[bool, dict[str, Any]] = {True: {}, False: {}}
    for b in (True, False):
        folder = _folder(topic, tables[b], b)
        first = folder.fold(records[:500], END)
        _apply(tables[b], first.state_writes())
        _apply(tables[b], first.progress)
        crashed = folder.fold(records[500:1500], END)
        keys = sorted(crashed.writes)
        for k in random.Random(4).sample(keys, len(keys) // 2):  # half of it reached the log
            _apply(tables[b], {k: crashed.writes[k]})
        # and its dedupe entries, a bundle per partition: whole or not at all
        for p in sorted(crashed.dedupe)[:1]:
            _apply(tables[b], {f"{p}|d|{i}": e for i, e in crashed.dedupe[p][0].items()})
    spy = _Spy(monkeypatch)
    got = {}
    for b in (True, False):
        folder = _folder(topic, tables[b], b)  # a new process: nothing in memory
        outs = [folder.fold(records[i : i + 300], END) for i in range(500, 2000, 300)]
        for out in outs:
            _apply(tables[b], out.state_writes())
            _apply(tables[b], out.progress)
        got[b] = [_result(out) for out in outs]
    assert got[True] == got[False]
    assert tables[True] == tables[False]
    assert spy.one > 0  # the replayed batches went event by event


def _tally_equals_adds(cls: Any, make: Any, scores: list[Any]) -> None:
    by_add, by_tally = cls.empty(), cls.empty()
    for args in scores:
        make(by_add, *args)
    tokens: dict[Any, int] = {}
    for args in scores:
        tok = cls.token(*args)
        key = tok[0] if isinstance(tok, tuple) and cls in (CsatCounts, CesCounts) else tok
        tokens[key] = tokens.get(key, 0) + 1
    for tok, k in tokens.items():
        by_tally.add_tally(tok, k)
    if cls in (CsatCounts, CesCounts):
        add_values(by_tally, [cls.token(*args)[1] for args in scores])
    assert by_tally.to_list() == by_add.to_list()


def test_add_tally_is_k_adds() -> None:
    rng = random.Random(5)
    _tally_equals_adds(NpsCounts, NpsCounts.add, [(rng.randint(0, 10),) for _ in range(500)])
    for cls, lo, hi in ((CsatCounts, 1, 5), (CsatCounts, 1, 10), (CsatCounts, 0, 3),
                        (CesCounts, 1, 7), (CesCounts, 1, 5), (CesCounts, 0, 10)):  # fmt: skip
        scores = [(rng.randint(lo, hi), lo, hi) for _ in range(500)]
        _tally_equals_adds(cls, cls.add, scores)  # floats too: add_values keeps the order

    events = [(rng.choice(["opened", "responded", "resolved", "reopened"]),
               rng.choice([None, 0.0, 3.5, 120.0, 86_400.0 * rng.random()]))
              for _ in range(500)]  # fmt: skip
    events = [(s, x if s in ("responded", "resolved") else None) for s, x in events]
    by_adds = fold_support(events)
    by_tally = SupportCounts.empty()
    for tok, k in Counter(SupportCounts.token(*e) for e in events).items():
        by_tally.add_tally(tok, k)
    assert by_tally.to_list() == by_adds.to_list()
