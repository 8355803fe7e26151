"""Faust tables whose changelog partition is named by the key, not by the current event.

Stock ``Table.partition_for_key`` takes the partition of the event being processed, which is
ambiguous for a batch from ``take_events`` (events of several partitions) and undefined in a
timer. Our keys carry their partition (stage 1: the input partition is the first field; stage 2:
a stable hash, see :func:`streams.aggregate.table_partition`), so we name it explicitly.
Relies on faust-streaming 0.15's ``Table.on_key_set -> send_changelog(partition_for_key(key))``;
``tests/agents/test_tables.py`` fails if an upgrade changes that.

The same key -> partition rule picks the local RocksDB database of a key (``CX_STORE=rocksdb://``,
see :mod:`streams.stores`): Faust's own RocksDB store would ask ``current_event()`` too.

**Staged changelog writes.** Faust sends one changelog message per ``table[key] = value``
through its ``ProducerBuffer`` (a queue drained by a task, one ``producer.send`` per message):
that path was ~40% of the worker's time. Our tables instead *stage* the message (the store is
updated at once, as before; the latest value per key wins) and :meth:`changelog_sent` sends
everything staged as one aiokafka record batch per changelog partition (``create_batch`` /
``send_batch``), then waits for the broker's acks. A key written several times in a batch is
sent once. Every writer already ends its batch with ``await table.changelog_sent()`` (the
barrier before a seal, see docs/crash-safety.md), so nothing stays staged across batches.
Relies on faust-streaming 0.15 ``ManagedUserDict.__setitem__/__delitem__ -> on_key_set /
on_key_del``, the aiokafka driver's ``Producer._ensure_producer()`` and the ``json`` codec being
``orjson.dumps`` (checked per table; otherwise Faust's serializer is used);
``tests/agents/test_agents.py`` fails if an upgrade changes them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import orjson
from faust.sensors.monitor import Monitor
from faust.stores.memory import Store as MemoryStore
from faust.tables.table import Table
from faust.types import EventT, FutureMessage, StoreT
from faust.types.codecs import CodecArg
from faust.utils.json import on_default
from yarl import URL

from streams import producing, stores
from streams.aggregate import table_partition
from streams.state import dedupe_entry


class _KeyPartitionedTable(Table):
    """Builds :class:`streams.stores.PartitionedRocksStore` for ``rocksdb://`` (faust 0.15
    ``Collection._new_store`` -> ``_new_store_by_url(self._store or app.conf.store)``), and
    keeps the futures of its changelog messages for :meth:`changelog_sent`."""

    _in_flight: deque[asyncio.Future[Any]] | None = None
    # (future, records) of the changelog sends since the last barrier, kept for a store that
    # defers its writes until they are acked (streams/stores.py, "Deferred writes")
    _sent: list[tuple[asyncio.Future[Any], int]] | None = None
    _send_error: BaseException | None = None
    _staged: dict[Any, Any] | None = None  # key -> value (None: delete), sent by changelog_sent
    _fast_codec: bool | None = None
    # Faust's Monitor's TableState of this table while that Monitor is the app's only sensor
    # (looked up again at every send_staged): reads and writes then count into it directly,
    # which is all Monitor.on_table_get/set/del do, instead of going through the sensor
    # delegate (~0.6 us a read or write, ~6 per event). None: Faust's sensor calls.
    _counts: Any = None

    def _watch_sensors(self) -> None:
        sensors = list(self.app.sensors)
        if len(sensors) == 1 and type(sensors[0]) is Monitor:
            self._counts = sensors[0]._table_or_create(self)
        else:
            self._counts = None

    def get(self, key: Any, default: Any = None) -> Any:
        """``Mapping.get`` without the exception: the inherited one reads ``self[key]`` and
        catches the ``KeyError`` a missing key raises three frames down (Faust ``__missing__``),
        which was ~10% of the worker's time (most reads of the fold miss: new event ids, new
        buckets). Same sensor call and same answers; tables with a ``default`` factory keep
        Faust's path."""
        if self.default is not None:
            return super().get(key, default)
        counts = self._counts
        if counts is not None:
            counts.keys_retrieved += 1
        else:
            self.on_key_get(key)
        data = self.data
        if type(data) is MemoryStore:  # its dict, without two Python-level calls (profile)
            return data.data.get(key, default)
        if key in data:  # the RocksDB store keeps the value read here for data[key]
            return data[key]
        return default

    def on_key_set(self, key: Any, value: Any) -> None:
        """Stage the changelog message (Faust would send it now, see the module doc)."""
        self._stage(key, value)
        counts = self._counts
        if counts is not None:
            counts.keys_updated += 1
        else:
            self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        self._stage(key, None)
        counts = self._counts
        if counts is not None:
            counts.keys_deleted += 1
        else:
            self._sensor_on_del(self, key)

    def write_many(self, writes: Mapping[Any, Any]) -> None:
        """``table[key] = value`` for every item, ``table.pop(key, None)`` where the value is
        None: the same store contents, staged messages and Monitor counts. On a memory store
        with only Faust's Monitor as sensor, one loop over the dicts instead of ~5 Python
        calls per key (``ManagedUserDict.__setitem__``, ``on_key_set``, the store's
        ``__setitem__``...: ~1.5 us a key, ~3 keys per event); else key by key."""
        data, counts = self.data, self._counts
        if type(data) is not MemoryStore or counts is None:
            for key, value in writes.items():
                if value is None:
                    self.pop(key, None)
                else:
                    self[key] = value
            return
        store = data.data
        staged = self._staged
        if staged is None:
            staged = self._staged = {}
        updated = deleted = 0
        for key, value in writes.items():
            if value is not None:
                store[key] = value
                staged[key] = value
                updated += 1
            elif key in store:
                del store[key]
                staged[key] = None
                deleted += 1
        counts.keys_updated += updated
        counts.keys_deleted += deleted
        counts.keys_retrieved += len(writes) - updated  # pop() reads the key first

    def _stage(self, key: Any, value: Any) -> None:
        staged = self._staged
        if staged is None:
            staged = self._staged = {}
        staged[key] = value

    def _track(self, fut: asyncio.Future[Any], n: int = 1) -> None:
        if self._sent is not None:
            self._sent.append((fut, n))
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

    def _codec_is_orjson(self) -> bool:
        """Whether Faust's key/value serializers give exactly ``orjson.dumps``'s bytes (the
        changelog is read back by Faust's own deserializers on recovery)."""
        if self._fast_codec is None:
            probe_key, probe_value = "0|k|nps|all|all|5m|1", [3, [1.5, None, "x", {"a": [1]}]]
            serializers = self.app.serializers
            try:
                self._fast_codec = serializers.dumps_key(
                    self.key_type, probe_key, serializer=self.key_serializer
                ) == _dumps(probe_key) and serializers.dumps_value(
                    self.value_type, probe_value, serializer=self.value_serializer
                ) == _dumps(probe_value)
            except Exception:  # noqa: BLE001 - any doubt: Faust's own path
                self._fast_codec = False
        return self._fast_codec

    def _batch_producer(self) -> Any:
        """The started aiokafka producer behind Faust's, or None (tests, other drivers)."""
        aio = producing.batch_producer(self.app)
        return aio if aio is not None and self._codec_is_orjson() else None

    async def send_staged(self) -> None:
        """Hand the staged changelog messages to the producer (without waiting for acks)."""
        self._watch_sensors()
        staged, self._staged = self._staged, None
        if not staged:
            return
        aio = self._batch_producer()
        if aio is None:  # Faust's path, one message at a time
            for key, value in staged.items():
                if value is None:
                    self.send_changelog(
                        self.partition_for_key(key), key, None, value_serializer="raw"
                    )
                else:
                    self.send_changelog(self.partition_for_key(key), key, value)
            return
        topic = self.changelog_topic.get_topic_name()
        by_partition: dict[int, list[tuple[Any, Any]]] = {}
        for key, value in staged.items():
            p = self.partition_for_key(key)
            if p is None:  # our subclasses always name it
                raise TypeError(f"{self.name}: no changelog partition for {key!r}")
            by_partition.setdefault(p, []).append((key, value))
        for p, items in by_partition.items():
            # each encoded right before its append (producing.send_partition)
            messages = ((_dumps(k), None if v is None else _dumps(v)) for k, v in items)
            for fut, n in await producing.send_partition(aio, topic, p, messages):
                if self._sent is None:  # a deferring store gets the offsets from changelog_sent
                    fut.add_done_callback(partial(self._on_batch_sent, n))
                self._track(fut, n)

    def _on_batch_sent(self, n: int, fut: asyncio.Future[Any]) -> None:
        # Collection._on_changelog_sent for a batch: the offset of its last record is what the
        # store records as persisted (at_least_once; no transactions on Tansu).
        if fut.cancelled() or fut.exception() is not None:
            return
        res = fut.result()
        self.data.set_persisted_offset(res.topic_partition, res.offset + n - 1)

    def _on_changelog_sent(self, fut: FutureMessage) -> None:
        if self._sent is None:  # a deferring store gets the offsets from changelog_sent
            super()._on_changelog_sent(fut)

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._track(fut)
        return fut

    async def changelog_sent(self) -> None:
        """Send the staged changelog messages, then wait until the broker acknowledged every
        changelog message of this table so far (raises the send error if one failed).

        ``app.producer.flush()`` is no such barrier for table writes, which Faust queues in its
        ``ProducerBuffer`` (faust-streaming 0.15 ``transport/producer.py``): ``flush_atmost``
        returns when no message left the queue within 0.1 s (a busy event loop), and as soon
        as the queue is empty, while the last message is still on its way to aiokafka.

        With the RocksDB store the table's writes reach the local DB only here, after the acks
        (streams/stores.py, "Deferred writes"): the pending writes are snapshot in the same
        step that hands their changelog messages to the producer.
        """
        sent = self._sent  # the list send_staged appends to: None unless the store defers
        snapshot = None if sent is None else self.data.pending_snapshot()  # type: ignore[attr-defined]
        await self.send_staged()
        in_flight, self._in_flight = self._in_flight or deque(), deque()
        if sent is not None:
            self._sent = []
        error, self._send_error = self._send_error, None
        if error is not None:
            raise error
        if in_flight:
            await asyncio.gather(*in_flight)
        if sent is not None:
            self.data.flush_pending(snapshot, _acked_offsets(sent))  # type: ignore[attr-defined]

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        store = stores.new_store(self, url)  # not `or`: an empty store is falsy (__len__)
        if store is None:
            return super()._new_store_by_url(url)
        self._sent = []  # it defers its writes: keep the sends' futures from the first one
        return store


def _acked_offsets(sent: Iterable[tuple[asyncio.Future[Any], int]]) -> dict[int, int]:
    """Changelog partition -> offset of the last acknowledged message among ``sent`` (futures
    of single messages or of record batches of ``n`` messages)."""
    offsets: dict[int, int] = {}
    for fut, n in sent:
        if fut.cancelled() or fut.exception() is not None:
            continue
        res = fut.result()
        tp = getattr(res, "topic_partition", None)
        if tp is None:  # a test double acknowledged without metadata
            continue
        last = res.offset + n - 1
        if last > offsets.get(tp.partition, -1):
            offsets[tp.partition] = last
    return offsets


def _dumps(obj: Any) -> bytes:
    """faust-streaming 0.15's ``json`` codec (``faust.utils.json.dumps`` with orjson)."""
    return orjson.dumps(obj, default=on_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)


class SourcePartitionedTable(_KeyPartitionedTable):
    """Stage-1 state: key ``"{partition}|..."``.

    Restoring from the changelog keeps, per key, the value with the highest offset marker
    rather than the last one written (:func:`newest_by_marker`).

    **Dedupe entries go out in bundles.** A batch writes one dedupe entry per event
    (``{p}|d|{event_id}``, :func:`streams.state.dedupe_value`); each was one changelog message,
    about half of stage 1's (~2 us a message to stage, encode and append). Since 2026-12-07 a
    batch's new entries of a partition (:attr:`streams.state.BatchResult.dedupe`) go out as one
    message, a *bundle* (``{p}|D|{lowest first offset}`` -> ``{"t": newest event time ms, "e":
    {event_id: entry}}``, at most :data:`BUNDLE_BYTES`), and the store keeps the entries
    one by one as before plus a marker of the bundle (``{p}|D|...`` -> its newest event time),
    which the expiry rounds delete (a tombstone) once every entry of the bundle expired
    (``Folder.expired_keys``). Restoring expands a bundle into its entries and its marker
    (:meth:`_expanded`). An expired entry is deleted from the store only (:meth:`drop_dedupe`):
    it never was a message of its own; except the entries restored from single messages
    (written before 2026-12-07, kept in ``_single_entries`` until they expire), whose tombstones
    compact them away. A bundle's entries that expired before its tombstone was compacted come
    back on a restore until the next expiry round (at most ``ExpirySchedule``'s 30 s): they are
    dead, so only an event whose id was first seen beyond the retention and is reused within
    those seconds would be judged a duplicate. Why a replay stays exact: docs/crash-safety.md,
    mechanism 4."""

    # A bundle's size in the changelog, at most (~25 B per entry besides its event id): 5,000
    # of the bench's entries (~60 B) fit in one (~300 kB), a 20,000-record batch of one
    # partition needs up to three, and long ids stay under the broker's 1 MB messages.
    BUNDLE_BYTES = 512 * 1024
    _single_entries: set[str] | None = None

    def partition_for_key(self, key: Any) -> int:
        return int(key[: key.index("|")])

    def write_dedupe(self, new: Mapping[int, tuple[dict[str, Any], int, int]]) -> None:
        """A batch's new dedupe entries (:attr:`streams.state.BatchResult.dedupe`): into the
        store one by one, staged as one bundle per partition (and per :data:`BUNDLE_BYTES`)."""
        if not new:
            return
        data = self.data
        staged = self._staged
        if staged is None:
            staged = self._staged = {}
        written = 0
        for p, (entries, first, newest) in new.items():
            prefix = f"{p}|d|"
            if type(data) is MemoryStore:
                data.data.update({prefix + event_id: e for event_id, e in entries.items()})
            else:
                for event_id, e in entries.items():
                    data[prefix + event_id] = e
            chunks = [(entries, first, newest)]
            if sum(map(len, entries)) + 25 * len(entries) > self.BUNDLE_BYTES:
                chunks = list(self._chunks(entries))
            for chunk, lowest, t in chunks:
                key = f"{p}|D|{lowest}"
                data[key] = t  # the marker, for expiry
                staged[key] = {"t": t, "e": chunk}
            written += len(entries) + len(chunks)
        if self._counts is not None:
            self._counts.keys_updated += written

    def _chunks(self, entries: dict[str, Any]) -> Iterator[tuple[dict[str, Any], int, int]]:
        """``entries`` in bundles of at most :data:`BUNDLE_BYTES`, each with its lowest first
        offset and newest event time."""
        chunk: dict[str, Any] = {}
        size = 0
        for event_id, entry in entries.items():
            if chunk and size + len(event_id) + 25 > self.BUNDLE_BYTES:
                yield self._bundle_of(chunk)
                chunk, size = {}, 0
            chunk[event_id] = entry
            size += len(event_id) + 25
        if chunk:
            yield self._bundle_of(chunk)

    @staticmethod
    def _bundle_of(chunk: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        spans = [dedupe_entry(e) for e in chunk.values()]
        return chunk, min(o for o, _ in spans), max(t for _, t in spans)

    def drop_dedupe(self, keys: Iterable[str]) -> None:
        """Delete expired dedupe entries from the store; a tombstone only for an entry
        restored from a single message (see the class doc)."""
        single = self._single_entries
        for key in keys:
            self.data.pop(key, None)
            if single is not None and key in single:
                single.discard(key)
                self._stage(key, None)

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        super().apply_changelog_batch(newest_by_marker(self._expanded(batch), self.data))

    def _expanded(self, batch: Iterable[EventT]) -> Iterator[Any]:
        """The changelog events with every bundle replaced by its entries and its marker."""
        for event in batch:
            key: Any = event.key
            message = event.message
            i = key.find("|") if isinstance(key, str) else -1
            kind = key[i + 1 : i + 3] if i > 0 else ""
            if kind == "D|" and message.value is not None and isinstance(event.value, dict):
                p = key[:i]
                for event_id, entry in event.value["e"].items():
                    yield _Restored(f"{p}|d|{event_id}", entry, message)
                yield _Restored(key, event.value["t"], message)
                continue
            if kind == "d|" and message.value is not None:
                if self._single_entries is None:
                    self._single_entries = set()
                self._single_entries.add(key)
            yield event


class _Restored:
    """A changelog event made from a bundle (``SourcePartitionedTable._expanded``): what the
    stores' ``apply_changelog_batch`` read of an event (the key and value, decoded and as
    bytes; the partition, topic-partition and offset of the bundle's message)."""

    __slots__ = ("key", "value", "message")

    def __init__(self, key: str, value: Any, bundle: Any) -> None:
        self.key, self.value = key, value
        self.message = _RestoredMessage(
            _dumps(key), _dumps(value), bundle.partition, bundle.tp, bundle.offset
        )


class _RestoredMessage:
    __slots__ = ("key", "value", "partition", "tp", "offset")

    def __init__(self, key: bytes, value: bytes, partition: int, tp: Any, offset: int) -> None:
        self.key, self.value, self.partition, self.tp, self.offset = (
            key, value, partition, tp, offset,
        )  # fmt: skip


def newest_by_marker(batch: Iterable[EventT], current: Mapping[Any, Any]) -> Iterator[EventT]:
    """The changelog events of ``batch`` minus those whose value is older than the key's value.

    Every stage-1 value but two is a list whose first element is the input offset it is
    complete up to (a bucket's marker, a seal's offset...). Values of one key
    only grow with that offset, so a value with a *lower* marker than the one already restored
    is a stale write: a worker that lost the partition in a rebalance but still finished its
    batch after the new owner wrote (Faust has no fencing without transactions; see
    docs/crash-safety.md, "Rebalance and zombie writes"). Last-write-wins would let it replace
    the newer value while the seal says those records are done: events lost on the next
    restore. Tombstones (expiry) and non-list values are applied as written: the member cap,
    and the dedupe entry (one packed int, :func:`streams.state.dedupe_value`), which is written
    once, with the offset of its id's first occurrence, the same for any writer."""
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
    """Stage-2 state: partition from the ``family|dim|member`` part of the key.

    ``recovered`` counts the changelog batches written into the table (recovery, standby
    replication): the merger's cached window sums are void after one (streams/aggregate.py,
    ``Merger.window_sum``)."""

    recovered = 0

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        self.recovered += 1
        super().apply_changelog_batch(batch)

    def partition_for_key(self, key: Any) -> int:
        return table_partition(key, int(self.partitions or 1))
