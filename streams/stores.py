"""RocksDB table store that finds a key's partition from the key itself (``CX_STORE=rocksdb://``).

Faust's RocksDB store keeps one database per changelog partition and picks it, for every
``get``/``set``, from ``faust.streams.current_event()`` (faust-streaming 0.15
``faust/stores/rocksdb.py``: ``_set`` asserts the event is not ``None``; ``_get``/``_contains``
use the event's partition when there is one). That is wrong for us twice over: a
``take_events`` batch mixes partitions (the "current" event is whichever came last, or none),
and the stage-2 timer writes with no event at all. Our tables already name the changelog
partition of every key (:meth:`streams.tables.SourcePartitionedTable.partition_for_key`), so the
store asks the table, and the database a key lives in is always the one its changelog
message goes to.

**Deferred writes.** A write stays in memory (``_pending``, read first by every lookup) until
its changelog message is acknowledged: ``changelog_sent()`` (:mod:`streams.tables`) snapshots
the pending writes when it sends their messages, waits for the acks, then writes the snapshot
and the acknowledged changelog offset ("persisted offset") to each partition's DB in one
atomic write batch (:meth:`PartitionedRocksStore.flush_pending`). So the local DB is always a
prefix of the changelog, and a restart restores the rest from the changelog after the persisted
offset. Faust's store writes at once and records the offset when the ack arrives: after a
SIGKILL between the two, the DB held a batch (and its seal) whose changelog messages and
partials never left the process; the restarted worker skipped the redelivered input records
as already sealed, so stage 2 never got their partials and the changelog never got the seal
(a CI run of ``test_rocksdb.py`` timed out waiting for it). Writers of one table are serialized
(one fold agent per table; the stage-2 lock), which the snapshot relies on.

Faust internals relied on (checked against faust-streaming 0.15.3; ``tests/unit/test_stores.py``
fails if they move):

- ``SerializedStore`` encodes keys with ``_encode_key`` and values with ``_encode_value``; we
  override its ``__getitem__/__setitem__/__delitem__/__contains__`` (which see the key before
  encoding) and, for Faust's byte-level callers, ``_get/_set/_del/_contains``.
- ``rocksdb.Store._db_for_partition(p)`` opens (and caches in ``_dbs``) the DB of partition
  ``p``; ``apply_changelog_batch`` (recovery) already routes by the changelog message's
  partition, and iteration (``_iterkeys`` ...) covers the DBs of actively assigned partitions
  (re-implemented here with the pending writes laid over them; ``_visible_items``/
  ``_visible_keys`` skip the offset key, ``offset_key`` names it, ``use_rocksdict`` picks the
  ``WriteBatch`` flavour).
- ``Table._new_store_by_url`` builds the store; :mod:`streams.tables` overrides it to build
  this class for ``rocksdb://`` URLs (see :func:`new_store`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
from faust.stores import rocksdb
from faust.types import TP, StoreT
from yarl import URL

from streams.codecs import compact

SCHEME = "rocksdb"

# Faust's defaults are sized for one big table (2 GiB block cache, 3 x 64 MiB memtables *per
# partition DB*); we open tables x partitions small DBs (5 x 4 by default).
DEFAULT_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 8 * 2**20,
    "max_write_buffer_number": 2,
}
#: One block cache for every DB of the process, memtables charged to it (RocksDB's write
#: buffer manager), index and filter blocks kept in it: what RocksDB holds in memory stays near
#: this, however many tables, partitions and keys (the README's memory figures). With a 32 MiB
#: cache *per DB* the bench's 1M replay peaked at 620 MB RSS.
SHARED_CACHE_BYTES = 128 * 2**20
#: Of which memtables may take (a flush is triggered above it).
WRITE_BUFFERS_BYTES = 64 * 2**20

_shared: tuple[Any, Any] | None = None


def shared_memory() -> tuple[Any, Any]:
    """The process's block cache and write buffer manager (rocksdict objects), made once."""
    global _shared
    if _shared is None:
        rocksdict = rocksdb.rocksdict
        cache = rocksdict.Cache(SHARED_CACHE_BYTES)
        manager = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            WRITE_BUFFERS_BYTES, False, cache
        )
        _shared = (cache, manager)
    return _shared


class BoundedOptions(rocksdb.RocksDBOptions):
    """Faust's options (rocksdict) with the shared cache and write buffer manager of
    :func:`shared_memory` instead of a block cache per DB."""

    def as_options(self) -> Any:
        options = super().as_options()
        if not self.use_rocksdict:  # pragma: no cover - python-rocksdb is not installed
            return options
        rocksdict = rocksdb.rocksdict
        cache, manager = shared_memory()
        options.set_write_buffer_manager(manager)
        # replaces Faust's table factory, which has a cache of its own (same bloom filter and
        # index type)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class PartitionedRocksStore(rocksdb.Store):
    """``rocksdb.Store`` whose per-partition DB is chosen by ``table.partition_for_key``."""

    def __init__(self, url: str | URL, app: Any, table: Any, **kwargs: Any) -> None:
        options = {**DEFAULT_OPTIONS, **(kwargs.pop("options", None) or {})}
        super().__init__(url, app, table, options=options, **kwargs)
        self.rocksdb_options = BoundedOptions(
            **(self.options or {}), use_rocksdict=self.use_rocksdict
        )
        # mode's FastUserDict.__getitem__ asks `key in data` and then `data[key]`: remember
        # the value read by the first so that the second does not read RocksDB again.
        self._last_read: tuple[bytes, bytes] | None = None
        # raw key -> (partition, raw value or None: deleted), see "Deferred writes"
        self._pending: dict[bytes, tuple[int, bytes | None]] = {}
        # Faust encodes a str key through its codec registry (json -> faust.utils.json.dumps,
        # which is orjson.dumps when orjson is installed): the same bytes, 10x slower. Use the
        # shortcut only if it gives exactly Faust's bytes: recovered keys are the changelog's.
        # Decoding likewise (1.4 us a key through Faust, 0.12 with orjson): an expiry round lists
        # every key of the table, ~1M of them after the bench's 1M replay.
        probe = '0|k|ünï|"q"|1'
        self._fast_keys = False
        if self.key_serializer == "json" and self.key_type is None:
            raw = super()._encode_key(probe)
            self._fast_keys = orjson.dumps(probe) == raw and super()._decode_key(raw) == probe

    def _partition_of(self, key: Any) -> int:
        """The partition (and DB) of ``key``; opens the DB lazily, as Faust's own ``_set``
        does: a read or write for a partition that is not (yet) open must see the local copy,
        never an empty value (that would fold from scratch and overwrite the changelog with
        smaller counts)."""
        partition = self.table.partition_for_key(key)
        if partition is None:  # use_partitioner tables: the producer would choose
            raise TypeError(f"{self.table_name}: table does not name the partition of {key!r}")
        p = int(partition)
        self._db_for_partition(p)
        return p

    def _db_for_key(self, key: Any) -> Any:
        return self._db_for_partition(self._partition_of(key))

    def _encode_key(self, key: Any) -> bytes:
        if self._fast_keys and type(key) is str:
            return orjson.dumps(key)
        return super()._encode_key(key)

    def _decode_key(self, key: bytes | None) -> Any:
        if self._fast_keys and key is not None:
            return orjson.loads(key)
        return super()._decode_key(key)

    # Writes wait in ``_pending`` until their changelog messages are acknowledged (the module
    # doc, "Deferred writes"); every read looks there first.

    # The public mapping methods get the key before encoding: route by it directly.
    def __getitem__(self, key: Any) -> Any:
        raw_key = self._encode_key(key)
        hit = self._pending.get(raw_key)
        if hit is not None:
            value: bytes | None = hit[1]
        else:
            last = self._last_read
            if last is not None and last[0] == raw_key:
                value = last[1]
            else:
                value = self._db_for_key(key).get(raw_key)
        if value is None:
            raise KeyError(key)
        return self._decode_value(value)

    def __contains__(self, key: object) -> bool:
        raw_key = self._encode_key(key)
        hit = self._pending.get(raw_key)
        if hit is not None:
            return hit[1] is not None
        value = self._db_for_key(key).get(raw_key)
        self._last_read = None if value is None else (raw_key, value)
        return value is not None

    def __setitem__(self, key: Any, value: Any) -> None:
        # compact: kept until the batch's acks, ~8 KiB a write otherwise (codecs.compact)
        raw = self._encode_value(value)
        self._pending[compact(self._encode_key(key))] = (
            self._partition_of(key),
            None if raw is None else compact(raw),
        )

    def __delitem__(self, key: Any) -> None:
        self._pending[compact(self._encode_key(key))] = (self._partition_of(key), None)

    # Byte-level entry points (used by Faust internals, not by the table's mapping API).
    def _set(self, key: bytes, value: bytes | None) -> None:
        self._pending[key] = (self._partition_of(self._decode_key(key)), value)

    def _get(self, key: bytes) -> bytes | None:
        hit = self._pending.get(key)
        if hit is not None:
            return hit[1]
        value: bytes | None = self._db_for_key(self._decode_key(key)).get(key)
        return value

    def _del(self, key: bytes) -> None:
        self._pending[key] = (self._partition_of(self._decode_key(key)), None)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def pending_snapshot(self) -> dict[bytes, tuple[int, bytes | None]]:
        """The writes not yet in the DBs (a copy): taken by ``changelog_sent`` when it sends
        their changelog messages, passed back to :meth:`flush_pending` once they are acked."""
        return dict(self._pending)

    def flush_pending(
        self, snapshot: Mapping[bytes, tuple[int, bytes | None]], offsets: Mapping[int, int]
    ) -> None:
        """Write ``snapshot`` and the persisted changelog ``offsets`` (partition -> offset of
        the last acknowledged message) to the DBs, one atomic write batch per partition. An
        entry written again since the snapshot stays pending (its newer value)."""
        batches: dict[int, Any] = {}
        for raw_key, (p, value) in snapshot.items():
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = self._write_batch()
            if value is None:
                batch.delete(raw_key)
            else:
                batch.put(raw_key, value)
        for p, offset in offsets.items():
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = self._write_batch()
            batch.put(self.offset_key, str(offset).encode())
        for p, batch in batches.items():
            self._db_for_partition(p).write(batch)
        self._last_read = None
        pending = self._pending
        for raw_key, entry in snapshot.items():
            if pending.get(raw_key) is entry:
                del pending[raw_key]

    def _write_batch(self) -> Any:
        # faust.stores.rocksdb binds WriteBatch to rocksdict's when it is installed (ours)
        if self.use_rocksdict:
            return rocksdb.WriteBatch(raw_mode=True)
        return rocksdb.WriteBatch()  # pragma: no cover - python-rocksdb

    # Iteration (expiry scans, table.keys()): the DBs of the active partitions with the pending
    # writes laid over them.
    def _active_dbs(self) -> Iterator[tuple[int, Any]]:
        actives = self.app.assignor.assigned_actives()
        topic = self.table.changelog_topic_name  # type: ignore[attr-defined]  # as Faust's
        for partition, db in list(self._dbs.items()):
            if TP(topic=topic, partition=partition) in actives or self.table.is_global:
                yield partition, db

    def _pending_items(self, p: int) -> list[tuple[bytes, bytes]]:
        """The pending writes (not deletes) of partition ``p``, listed (the table may be
        written while an iteration is suspended)."""
        return [(k, v) for k, (q, v) in list(self._pending.items()) if q == p and v is not None]

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        pending = self._pending
        for p, db in self._active_dbs():
            for key, value in self._visible_items(db):
                if key not in pending:
                    yield key, value
            yield from self._pending_items(p)

    def _iterkeys(self) -> Iterator[bytes]:
        pending = self._pending
        for p, db in self._active_dbs():
            for key in self._visible_keys(db):
                if key not in pending:
                    yield key
            for key, _value in self._pending_items(p):
                yield key

    def _itervalues(self) -> Iterator[bytes]:
        for _key, value in self._iteritems():
            yield value

    def _size(self) -> int:
        return sum(1 for _ in self._iterkeys())

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        # The next owner's writes are the truth: what we had not flushed is in the changelog
        # (acknowledged) or lost with our ownership.
        gone = {tp.partition for tp in tps if tp.topic in table.changelog_topic.topics}
        if gone:
            self._pending = {k: e for k, e in self._pending.items() if e[0] not in gone}
        self._last_read = None
        super().revoke_partitions(table, tps)

    def reset_state(self) -> None:
        self._pending.clear()
        self._last_read = None
        super().reset_state()

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        # Recovery/standby writes go straight to the DBs (by the message's partition): they
        # are acknowledged changelog records.
        self._last_read = None
        super().apply_changelog_batch(batch, to_key, to_value)


def scan_keys(table: Any) -> Iterable[str]:
    """A table's keys for an expiry round (:class:`streams.agents.expiry.ExpiryScan`): read
    lazily from RocksDB, whose iterators see a consistent snapshot while the table is written;
    a list for any other store (a dict cannot be iterated while it changes, and its list only
    holds references). Listing a RocksDB table at once decoded every key into a new string:
    ~100 MB and a blocked event loop per table after the bench's 1M replay."""
    if isinstance(table.data, PartitionedRocksStore):
        return iter(table.data.keys())
    return list(table.keys())


def new_store(table: Any, url: str | URL) -> StoreT | None:
    """The store for ``url`` if it is ours (``rocksdb://``), else ``None`` (Faust decides).

    Mirrors the keyword arguments of faust 0.15 ``Collection._new_store_by_url``.
    """
    url = URL(str(url))
    if url.scheme != SCHEME:
        return None
    return PartitionedRocksStore(
        url,
        table.app,
        table,
        table_name=table.name,
        key_type=table.key_type,
        key_serializer=table.key_serializer,
        value_serializer=table.value_serializer,
        value_type=table.value_type,
        loop=table.loop,
        options=table.options,
    )
