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

- ``SerializedStore`` encodes keys with ``_encode_key`` and values with ``_encode_value``; we
  override its ``__getitem__/__setitem__/__delitem__/__contains__`` (which see the key before
  encoding) and, for Faust's byte-level callers, ``_get/_set/_del/_contains``.
- ``rocksdb.Store._db_for_partition(p)`` opens (and caches in ``_dbs``) the DB of partition
  ``p``; ``apply_changelog_batch`` (recovery) already routes by the changelog message's
  partition, and iteration (``_iterkeys`` ...) covers the DBs of actively assigned partitions.
- ``Table._new_store_by_url`` builds the store; :mod:`streams.tables` overrides it to build
  this class for ``rocksdb://`` URLs (see :func:`new_store`).
"""

from __future__ import annotations

from typing import Any

import orjson
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
        # mode's FastUserDict.__getitem__ asks `key in data` and then `data[key]`: remember
        # the value read by the first so that the second does not read RocksDB again.
        self._last_read: tuple[bytes, bytes] | None = None
        # Faust encodes a str key through its codec registry (json -> faust.utils.json.dumps,
        # which is orjson.dumps when orjson is installed): the same bytes, 10x slower. Use the
        # shortcut only if it gives exactly Faust's bytes: recovered keys are the changelog's.
        probe = '0|k|ünï|"q"|1'
        self._fast_keys = (
            self.key_serializer == "json"
            and self.key_type is None
            and orjson.dumps(probe) == super()._encode_key(probe)
        )

    def _db_for_key(self, key: Any) -> Any:
        partition = self.table.partition_for_key(key)
        if partition is None:  # use_partitioner tables: the producer would choose
            raise TypeError(f"{self.table_name}: table does not name the partition of {key!r}")
        # Opens the DB lazily, as Faust's own _set does: a read or write for a partition that is
        # not (yet) open must see the local copy, never an empty value (that would fold from
        # scratch and overwrite the changelog with smaller counts).
        return self._db_for_partition(int(partition))

    def _encode_key(self, key: Any) -> bytes:
        if self._fast_keys and type(key) is str:
            return orjson.dumps(key)
        return super()._encode_key(key)

    # The public mapping methods get the key before encoding: route by it directly.
    def __getitem__(self, key: Any) -> Any:
        raw_key = self._encode_key(key)
        last = self._last_read
        if last is not None and last[0] == raw_key:
            value: bytes | None = last[1]
        else:
            value = self._db_for_key(key).get(raw_key)
        if value is None:
            raise KeyError(key)
        return self._decode_value(value)

    def __contains__(self, key: object) -> bool:
        raw_key = self._encode_key(key)
        value = self._db_for_key(key).get(raw_key)
        self._last_read = None if value is None else (raw_key, value)
        return value is not None

    def __setitem__(self, key: Any, value: Any) -> None:
        self._last_read = None
        self._db_for_key(key).put(self._encode_key(key), self._encode_value(value))

    def __delitem__(self, key: Any) -> None:
        self._last_read = None
        self._db_for_key(key).delete(self._encode_key(key))

    # Byte-level entry points (used by Faust internals, not by the table's mapping API).
    def _set(self, key: bytes, value: bytes | None) -> None:
        self._last_read = None
        self._db_for_key(self._decode_key(key)).put(key, value)

    def _get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db_for_key(self._decode_key(key)).get(key)
        return value

    def _del(self, key: bytes) -> None:
        self._last_read = None
        self._db_for_key(self._decode_key(key)).delete(key)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        self._last_read = None
        super().revoke_partitions(table, tps)

    def reset_state(self) -> None:
        self._last_read = None
        super().reset_state()

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        # Recovery/standby writes go straight to the DBs (by the message's partition).
        self._last_read = None
        super().apply_changelog_batch(batch, to_key, to_value)


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
