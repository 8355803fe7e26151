"""Faust tables whose changelog partition is named by the key, not by the current event.

Stock ``Table.partition_for_key`` takes the partition of the event being processed, which is
ambiguous for a batch from ``take_events`` (events of several partitions) and undefined in a
timer. Our keys carry their partition (stage 1: the input partition is the first field; stage 2:
a stable hash, see :func:`streams.aggregate.table_partition`), so we name it explicitly.
Relies on faust-streaming 0.15's ``Table.on_key_set -> send_changelog(partition_for_key(key))``;
``tests/agents/test_tables.py`` fails if an upgrade changes that.

The same key -> partition rule picks the local RocksDB database of a key (``CX_STORE=rocksdb://``,
see :mod:`streams.stores`): Faust's own RocksDB store would ask ``current_event()`` too.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from faust.tables.table import Table
from faust.types import EventT, FutureMessage, StoreT
from faust.types.codecs import CodecArg
from yarl import URL

from streams import stores
from streams.aggregate import table_partition


class _KeyPartitionedTable(Table):
    """Builds :class:`streams.stores.PartitionedRocksStore` for ``rocksdb://`` (faust 0.15
    ``Collection._new_store`` -> ``_new_store_by_url(self._store or app.conf.store)``), and
    keeps the futures of its changelog messages for :meth:`changelog_sent`."""

    _in_flight: deque[FutureMessage] | None = None
    _send_error: BaseException | None = None

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        in_flight = self._in_flight
        if in_flight is None:
            in_flight = self._in_flight = deque()
        while in_flight and in_flight[0].done():  # sends complete about in order: O(1) each
            done = in_flight.popleft()
            if self._send_error is None and (done.cancelled() or done.exception()):
                self._send_error = (
                    asyncio.CancelledError() if done.cancelled() else done.exception()
                )
        in_flight.append(fut)
        return fut

    async def changelog_sent(self) -> None:
        """Wait until the broker acknowledged every changelog message of this table so far
        (raises the send error if one failed).

        ``app.producer.flush()`` is no such barrier for table writes, which Faust queues in its
        ``ProducerBuffer`` (faust-streaming 0.15 ``transport/producer.py``): ``flush_atmost``
        returns when no message left the queue within 0.1 s (a busy event loop), and as soon
        as the queue is empty, while the last message is still on its way to aiokafka.
        """
        in_flight, self._in_flight = self._in_flight or deque(), deque()
        error, self._send_error = self._send_error, None
        if error is not None:
            raise error
        if in_flight:
            await asyncio.gather(*in_flight)

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        store = stores.new_store(self, url)  # not `or`: an empty store is falsy (__len__)
        return store if store is not None else super()._new_store_by_url(url)


class SourcePartitionedTable(_KeyPartitionedTable):
    """Stage-1 state: key ``"{partition}|..."``.

    Restoring from the changelog keeps, per key, the value with the highest offset marker
    rather than the last one written (:func:`newest_by_marker`)."""

    def partition_for_key(self, key: Any) -> int:
        return int(key.split("|", 1)[0])

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        super().apply_changelog_batch(newest_by_marker(batch, self.data))


def newest_by_marker(batch: Iterable[EventT], current: Mapping[Any, Any]) -> Iterator[EventT]:
    """The changelog events of ``batch`` minus those whose value is older than the key's value.

    Every stage-1 value is a list whose first element is the input offset it is complete up
    to (a bucket's marker, a dedupe entry's first offset, a seal's offset...). Values of one key
    only grow with that offset, so a value with a *lower* marker than the one already restored
    is a stale write: a worker that lost the partition in a rebalance but still finished its
    batch after the new owner wrote (Faust has no fencing without transactions; see
    docs/crash-safety.md, "Rebalance and zombie writes"). Last-write-wins would let it replace
    the newer value while the seal says those records are done: events lost on the next
    restore. Tombstones (expiry) and non-list values (the member cap) are applied as written.
    """
    latest: dict[Any, Any] = {}
    for event in batch:
        key, value = event.key, event.value
        if event.message.value is not None and isinstance(value, list) and value:
            old = latest[key] if key in latest else current.get(key)
            if isinstance(old, list) and old and old[0] > value[0]:
                continue
        latest[key] = value
        yield event


class MergeTable(_KeyPartitionedTable):
    """Stage-2 state: partition from the ``family|dim|member`` part of the key."""

    def partition_for_key(self, key: Any) -> int:
        return table_partition(key, int(self.partitions or 1))
