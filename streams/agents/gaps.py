"""Stage 1 folds each input partition in offset order, without holes: this module makes sure.

The markers and seals of stage 1 (docs/crash-safety.md) assume that a partition's records reach
the fold agent in offset order: a record at or below the seal is taken for a replay and skipped.
Faust 0.15 can break that around a rebalance: records prefetched before the consumer seeks back
to the committed offset are still handed over after the seek, which moves Faust's "read offset"
ahead, and then the records between the committed offset and that read offset are dropped
("DROPPED MESSAGE ROFF", faust/transport/consumer.py ``_drain_messages``; upstream reports:
robinhood/faust#115, #681, faust-streaming/faust#221, #318). Folding the later records first
would seal past the dropped ones, which would then never be counted.

So the fold agent checks, per partition and batch, that the records above the seal start right
after it and have no holes. When they do not, the range from the seal to the batch's last
offset is read straight from the broker (a group-less consumer) and folded instead. A hole that
is really in the log (compaction of ``cx.customers``, retention) reads back as the same records,
so the check costs one extra fetch then and changes nothing.

Stage 2 does the same for the partials topic: the last partials offset applied to a merge
partition travels in its seal (``#wm|q`` value, key ``#o``). A dropped snapshot would otherwise
be lost when it was the last one of its bucket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.state import Record

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 30.0


def holes(records: list[Record], seal: Any) -> dict[int, tuple[int, int]]:
    """Partitions whose records above the seal are not ``seal+1, seal+2, ...`` in order:
    ``{partition: (first offset to read, last offset to read)}``. ``seal`` maps a partition to
    ``[last offset done, ...]`` (``None``: nothing done yet, expect offset 0)."""
    by_partition: dict[int, list[int]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r.offset)
    out: dict[int, tuple[int, int]] = {}
    for p, offsets in by_partition.items():
        progress = seal(p)
        start = expected = progress[0] + 1 if progress else 0
        for o in offsets:
            if o < expected:
                continue  # a replay: the fold skips it
            if o != expected:
                out[p] = (start, max(offsets))
                break
            expected += 1
    return out


class InputLog:
    """Reads offset ranges of one input topic straight from the broker."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def read(self, partition: int, first: int, last: int) -> list[Record]:
        """Every record of ``partition`` with ``first <= offset <= last`` (offsets missing in the
        log are simply absent). ``last`` must exist: it was just delivered."""
        async with self._lock:
            consumer = await self._start()
            tp = TopicPartition(self.topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, first)
            out: list[Record] = []
            async with asyncio.timeout(READ_TIMEOUT_S):
                while True:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    for m in batch.get(tp, ()):
                        if m.offset > last:
                            return out
                        out.append(Record(partition, m.offset, m.value, m.timestamp, m.key))
                        if m.offset == last:
                            return out
                    if await consumer.position(tp) > last:
                        return out

    async def _start(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a range below the log start reads from it
                fetch_max_wait_ms=100,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


async def in_order(
    records: list[Record], seal: Callable[[int], Any], input_log: InputLog
) -> list[Record]:
    """``records`` with every partition that has a hole or is out of order replaced by the
    range from its seal (``seal(p)``: ``[last offset done, ...]`` or ``None``) to its last
    offset, read from the broker."""
    todo = holes(records, seal)
    if not todo:
        return records
    out = [r for r in records if r.partition not in todo]
    for p, (first, last) in todo.items():
        got = [r.offset for r in records if r.partition == p]
        filled = await input_log.read(p, first, last)
        log.warning(
            "%s[%d]: records %s..%s arrived as %d records from offset %d (a hole or out of "
            "order, see streams/agents/gaps.py); read %d from the broker instead",
            input_log.topic, p, first, last, len(got), min(got), len(filled),
        )  # fmt: skip
        out += [r for r in records if r.partition == p and r.offset < first] + filled
    return out
