"""Stage 2's cached window sums (``Merger.window_sum``) equal the full sum of the window's 60
buckets bit for bit (``Merger.bucket_sum``), whatever changed in between: new buckets, late
changes to old ones, expiry, a table written from its changelog."""

from __future__ import annotations

import random
from typing import Any

from streams.aggregate import PREFIX, Merger
from streams.events import TOPIC_SURVEYS
from streams.metrics.stats import FAMILIES
from streams.windows import window_specs

WINDOWS = window_specs({"5m": 300, "1h": 3600})
T0 = 1_790_000_000_000


class _Table(dict[str, Any]):
    recovered = 0  # as MergeTable: changelog batches written into it


def _csat(rng: random.Random, n: int) -> list[Any]:
    scores = [rng.choice([1, 2, 3, 4, 5, 1 + 4 * rng.randint(0, 9) / 9]) for _ in range(n)]
    sat = sum(s >= 4 for s in scores)
    dis = sum(s <= 2 for s in scores)
    return [n, sat, n - sat - dis, dis, float(sum(scores)), float(sum(s * s for s in scores))]


def _row(rng: random.Random, w: str, b: int, marker: int) -> list[Any]:
    return [w, b, marker, _csat(rng, rng.randint(1, 5))]


def _from_table(table: dict[str, Any], m: tuple[str, str, str], w: str, end: int) -> Any:
    """The window's sum straight from the table: every bucket key in range, in bucket order,
    sources in order, each parsed anew (what the merger's index and parse cache must equal)."""
    cls = FAMILIES[m[0]]
    total = cls.empty()
    prefix = f"{'|'.join(m)}|{w}|"
    found = sorted(int(k[len(prefix) :]) for k in table if k.startswith(prefix))
    for b in (b for b in found if end - 60 <= b < end):
        snap, bucket = table[f"{prefix}{b}"], cls.empty()
        for src in sorted(snap):  # a bucket's sources merged first, then added: same floats
            bucket.iadd(cls.from_list(snap[src][1]))
        total.iadd(bucket)
    return total


def _check(merger: Merger, members: list[tuple[str, str, str]], wm: int) -> int:
    checked = 0
    for m in members:
        for w in WINDOWS:
            end = w.end_bucket(wm)
            cached = merger.window_sum(m, w, end)
            assert cached.to_list() == merger.bucket_sum(m, w, end).to_list(), (m, w.name)
            expected = _from_table(merger.table, m, w.name, end)  # type: ignore[arg-type]
            assert cached.to_list() == expected.to_list(), (m, w.name)
            checked += 1
    return checked


def test_cached_window_sums_equal_full_sums() -> None:
    rng = random.Random(7)
    table = _Table()
    merger = Merger(table, WINDOWS, partitions=1, min_sample=1)
    members = [("csat", "all", "all"), ("csat", "segment", "smb")]
    marker = 0
    wm = T0
    checks = forgotten = 0
    for step in range(400):
        wm += rng.choice([0, 0, 1000, 5000, 60_000])
        merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "s:0", "wm": wm}, 0)
        m = rng.choice(members)
        rows = []
        for w in WINDOWS:
            end = w.end_bucket(wm)
            # mostly the newest buckets; sometimes a late one deep in the window
            b = end - 1 - (rng.randint(0, 1) if rng.random() < 0.8 else rng.randint(2, 59))
            marker += 1
            rows.append(_row(rng, w.name, b, marker))
        before = len(merger._sums)
        merger.apply("|".join(m), {"s": rng.choice(["s:0", "s:1"]), "wm": wm, "b": rows}, 0)
        forgotten += before - len(merger._sums)
        if step % 17 == 0:  # expiry of an old bucket, or of one inside the window
            w = rng.choice(WINDOWS)
            b = w.end_bucket(wm) - rng.randint(1, 70)
            merger.drop(f"{'|'.join(rng.choice(members))}|{w.name}|{b}")
        if step % 50 == 49:  # the changelog rewrote some buckets behind the merger's back
            for key in rng.sample(sorted(k for k in table if "|5m|" in k), 3):
                table[key] = {"s:9": [10**9, _csat(rng, 2)]}
            # and wrote buckets the merger never saw (a standby's, recovered)
            for m in members:
                b = WINDOWS[0].end_bucket(wm) - rng.randint(1, 59)
                table.setdefault(f"{'|'.join(m)}|5m|{b}", {"s:8": [10**9, _csat(rng, 3)]})
            table.recovered += 1
        checks += _check(merger, members, wm)
    assert checks == 400 * len(members) * len(WINDOWS)
    assert forgotten > 20  # late rows do void cached sums


def test_an_unchanged_window_is_not_summed_again() -> None:
    rng = random.Random(3)
    merger = Merger(_Table(), WINDOWS, partitions=1, min_sample=1)
    m = ("csat", "all", "all")
    w = WINDOWS[1]
    wm = T0 + 3_600_000
    end = w.end_bucket(wm)
    merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "s:0", "wm": wm}, 0)
    rows = [_row(rng, w.name, b, i) for i, b in enumerate(range(end - 60, end))]
    merger.apply("|".join(m), {"s": "s:0", "wm": wm, "b": rows}, 0)
    first = merger.window_sum(m, w, end).to_list()
    reads: list[str] = []
    bucket = merger._bucket

    def spy(key: str, cls: Any, parsed: Any = None) -> Any:
        reads.append(key)
        return bucket(key, cls, parsed)

    merger._bucket = spy  # type: ignore[method-assign]
    parsed: list[Any] = []
    cls = FAMILIES["csat"]
    from_list = cls.from_list

    def parse(c: Any, data: list[Any]) -> Any:
        parsed.append(data)
        return from_list.__func__(c, data)  # type: ignore[attr-defined]

    cls.from_list = classmethod(parse)  # type: ignore[method-assign,assignment,arg-type]
    try:
        assert merger.window_sum(m, w, end).to_list() == first
        assert merger.window_sum(m, w, end).to_list() == first
    finally:
        cls.from_list = from_list  # type: ignore[method-assign]
    assert len(reads) == 2 * (60 - PREFIX)  # only the newest buckets
    # no stored bucket parsed again (parsed at the first sum, not changed since); what is left
    # is the copy of the cached prefix sum, one per sum
    stored = [v[1] for snap in merger.table.values() for v in snap.values()]
    assert not [d for d in parsed if any(d is x for x in stored)]
    assert len(parsed) == 2
    reads.clear()
    reads.clear()
    late = _row(rng, w.name, end - 50, 1000)
    merger.apply("|".join(m), {"s": "s:0", "wm": wm, "b": [late]}, 0)
    assert merger.window_sum(m, w, end).to_list() != first
    assert len(reads) == 60  # a changed old bucket: summed in full again
