"""The fold agent's in-order check (streams/agents/gaps.py), without a broker."""

from __future__ import annotations

from typing import Any

from streams.agents import gaps
from streams.state import Record


def _recs(partition: int, *offsets: int) -> list[Record]:
    return [Record(partition, o, f"v{o}".encode(), 1_000 + o) for o in offsets]


def test_contiguous_records_after_the_seal_have_no_holes() -> None:
    seals = {0: [9, 1], 1: None}
    records = _recs(0, 8, 9, 10, 11, 12) + _recs(1, 0, 1, 2)  # 8, 9: replays, skipped
    assert gaps.holes(records, seals.get) == {}


def test_a_hole_or_disorder_asks_for_the_range_from_the_seal() -> None:
    seals = {0: [9, 1], 1: [4, 1], 2: None, 3: [2, 1]}
    records = (
        _recs(0, 10, 11, 14)  # 12, 13 missing
        + _recs(1, 9, 10)  # 5..8 dropped before the batch (the Faust case)
        + _recs(2, 3, 4)  # nothing folded yet: expect offset 0
        + _recs(3, 4, 3)  # out of order
    )
    assert gaps.holes(records, seals.get) == {0: (10, 14), 1: (5, 10), 2: (0, 4), 3: (3, 4)}


class _Log:
    topic = "cx.survey-responses"

    def __init__(self, log: dict[int, list[int]]) -> None:
        self.log, self.reads = log, []  # type: ignore[var-annotated]

    async def read(self, partition: int, first: int, last: int) -> list[Record]:
        self.reads.append((partition, first, last))
        return _recs(partition, *[o for o in self.log[partition] if first <= o <= last])


async def test_in_order_refolds_the_range_from_the_broker() -> None:
    table: dict[str, Any] = {"0|p": [4, 1], "1|p": [2, 1]}
    # partition 0: 5, 6 were dropped; the log has them. Partition 1: 4 is compacted away.
    log = _Log({0: list(range(0, 12)), 1: [0, 1, 2, 3, 5, 6]})
    records = _recs(0, 3, 7, 8) + _recs(1, 3, 5, 6)
    got = await gaps.in_order(records, lambda p: table.get(f"{p}|p"), log)  # type: ignore[arg-type]
    assert sorted((r.partition, r.offset) for r in got) == [
        (0, 3), (0, 5), (0, 6), (0, 7), (0, 8), (1, 3), (1, 5), (1, 6),
    ]  # fmt: skip
    assert log.reads == [(0, 5, 8), (1, 3, 6)]  # a real hole costs one read, changes nothing
    assert [r.raw for r in got if r.partition == 0 and r.offset == 5] == [b"v5"]


async def test_in_order_without_holes_reads_nothing() -> None:
    log = _Log({})
    records = _recs(0, 5, 6)
    assert await gaps.in_order(records, lambda p: [4, 1], log) is records  # type: ignore[arg-type]
    assert log.reads == []
