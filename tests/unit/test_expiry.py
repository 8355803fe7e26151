"""streams.agents.expiry: every 30 s of wall time, and every retention / 8 of event time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.agents import expiry
from streams.agents.expiry import ExpiryScan, ExpirySchedule


def test_event_time_triggers_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expiry.time, "monotonic", lambda: 100.0)
    s = ExpirySchedule(retention_s=8_000)  # a step of 1,000 s of event time
    assert s.step_ms == 1_000_000
    assert not s.due(0, 5_000_000, wall_due=False)  # first sight: the start
    assert not s.due(0, 5_999_999, wall_due=False)
    assert s.due(0, 6_000_000, wall_due=False)
    assert not s.due(0, 6_500_000, wall_due=False)  # counted from the last expiry
    assert not s.due(1, 6_500_000, wall_due=False)  # keys are independent
    assert s.due(1, 6_500_000, wall_due=True)  # wall time: every key
    assert not s.due(2, None, wall_due=False)
    assert s.due(2, None, wall_due=True)  # no watermark yet: wall time alone decides


def test_wall_time_triggers_every_30_s(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000.0]
    monkeypatch.setattr(expiry.time, "monotonic", lambda: now[0])
    s = ExpirySchedule(retention_s=3_600)
    now[0] += 30.0
    assert not s.wall_due()
    now[0] += 0.5
    assert s.wall_due()
    assert not s.wall_due()  # answered yes: the clock restarts
    now[0] += 31
    assert s.wall_due()


def test_a_round_is_spread_over_batches_in_chunks() -> None:
    keys = [f"k{i}" for i in range(25)]
    snapshots: list[int] = []

    def snapshot() -> list[str]:
        snapshots.append(len(keys))
        return list(keys)

    scan = ExpiryScan(chunk=10)
    assert scan.step([], snapshot) is None and snapshots == []  # nothing due: no pass
    assert scan.step([0], snapshot) == ({0}, keys[:10])
    keys.append("k25")  # added during the round: left for the next one
    assert scan.step([1], snapshot) == ({0}, keys[10:20])  # 1 became due meanwhile: next round
    assert scan.step([], snapshot) == ({0}, keys[20:25])
    assert snapshots == [25]
    assert scan.step([], snapshot) == ({1}, keys[:10])  # the pending round, a new snapshot
    assert snapshots == [25, 26]
    assert scan.step([], snapshot) == ({1}, keys[10:20])
    assert scan.step([], snapshot) == ({1}, keys[20:26])
    assert scan.step([], snapshot) is None


def test_an_empty_table_ends_the_round_at_once() -> None:
    scan = ExpiryScan(chunk=10)
    assert scan.step([0], list) == ({0}, [])
    assert scan.step([], list) is None


def test_a_round_reads_an_iterator_chunk_by_chunk() -> None:
    """A RocksDB table's keys come as an iterator (streams.stores.scan_keys): a batch reads one
    chunk of it (and one key ahead, which tells the last chunk), never the whole table."""
    pulled: list[str] = []

    def lazy() -> Iterator[str]:
        for i in range(25):
            pulled.append(f"k{i}")
            yield f"k{i}"

    scan = ExpiryScan(chunk=10)
    assert scan.step([0], lazy) == ({0}, [f"k{i}" for i in range(10)])
    assert len(pulled) == 11 and scan.running
    assert scan.step([], lazy) == ({0}, [f"k{i}" for i in range(10, 20)])
    assert len(pulled) == 21
    assert scan.step([], lazy) == ({0}, [f"k{i}" for i in range(20, 25)])
    assert not scan.running and scan.step([], lazy) is None
    exact = ExpiryScan(chunk=5)  # a round whose last chunk is full ends with it
    assert exact.step([0], lambda: iter(["a", "b", "c", "d", "e"])) == (
        {0},
        ["a", "b", "c", "d", "e"],
    )
    assert not exact.running


@pytest.mark.parametrize("batch", [400, 5_000, 20_000, 50_000])
def test_stage_1_rounds_keep_pace_with_the_keys_a_replay_adds(batch: int) -> None:
    """A replay whose rounds are always due (event time runs ahead of the retention's steps),
    one new key per record, each dead ``live`` records later: with the scan's chunk per batch
    (``chunk_for``) the table stays within a few times the live keys, whatever the batch size.
    2026-12-07: the chunk was capped at 10k keys; at 20k records a batch that was half a key
    per record, and a 10M-event ``make memory`` run grew to 1.4 GB (~300 MB before)."""
    live = 200_000
    table: dict[int, None] = {}
    scan = ExpiryScan()
    made = 0
    sizes = []
    for _ in range(3_000_000 // batch):
        table.update(dict.fromkeys(range(made, made + batch)))
        made += batch
        step = scan.step([0], lambda: list(table), expiry.chunk_for(batch))
        assert step is not None
        for key in step[1]:
            if key < made - live and key in table:  # dead at this batch's watermark
                del table[key]
        sizes.append(len(table))
    # a round over S keys takes S / (2 per record) records, in which S / 2 keys are added
    assert max(sizes[len(sizes) // 2 :]) < 3 * live
