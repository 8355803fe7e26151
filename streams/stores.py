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

Faust internals relied on (checked against faust-streaming 0.15.3; ``tests/unit/test_stores.py``
fails if they move):

- ``SerializedStore.__getitem__/__setitem__/__delitem__/__contains__`` call
  ``_get/_set/_del/_contains`` with the *encoded* key; we decode it with ``_decode_key``.
- ``rocksdb.Store._db_for_partition(p)`` opens (and caches in ``_dbs``) the DB of partition
  ``p``; ``apply_changelog_batch`` (recovery) already routes by the changelog message's
  partition, and iteration (``_iterkeys`` ...) covers the DBs of actively assigned partitions.
- ``Table._new_store_by_url`` builds the store; :mod:`streams.tables` overrides it to build
  this class for ``rocksdb://`` URLs (see :func:`new_store`).
"""

from __future__ import annotations

from typing import Any

from faust.stores import rocksdb
from faust.types import StoreT
from yarl import URL

SCHEME = "rocksdb"

# Faust's defaults are sized for one big table (2 GiB block cache, 3 x 64 MiB memtables *per
# partition DB*); we open tables x partitions small DBs, so cap what each may hold in memory.
DEFAULT_OPTIONS: dict[str, Any] = {
    "block_cache_size": 32 * 2**20,
    "write_buffer_size": 8 * 2**20,
    "max_write_buffer_number": 2,
}


class PartitionedRocksStore(rocksdb.Store):
    """``rocksdb.Store`` whose per-partition DB is chosen by ``table.partition_for_key``."""

    def __init__(self, url: str | URL, app: Any, table: Any, **kwargs: Any) -> None:
        options = {**DEFAULT_OPTIONS, **(kwargs.pop("options", None) or {})}
        super().__init__(url, app, table, options=options, **kwargs)

    def _partition(self, key: bytes) -> int:
        partition = self.table.partition_for_key(self._decode_key(key))
        if partition is None:  # use_partitioner tables: the producer would choose
            raise TypeError(f"{self.table_name}: table does not name the partition of {key!r}")
        return int(partition)

    def _db(self, key: bytes) -> Any:
        # Opens the DB lazily, as Faust's own _set does: a read or write for a partition that is
        # not (yet) open must see the local copy, never an empty value (that would fold from
        # scratch and overwrite the changelog with smaller counts).
        return self._db_for_partition(self._partition(key))

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._db(key).put(key, value)

    def _get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db(key).get(key)
        return value

    def _del(self, key: bytes) -> None:
        self._db(key).delete(key)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None


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
