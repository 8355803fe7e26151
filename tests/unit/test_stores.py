"""``CX_STORE=rocksdb://``: every key lands in the RocksDB database of the partition its table
names, with no current event (batches, timers), and survives a reopen. No broker."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.aggregate import table_partition
from streams.app import create_app
from streams.settings import Settings
from streams.stores import PartitionedRocksStore
from streams.tables import MergeTable, SourcePartitionedTable


def _app(tmp_path: Path, store: str = "rocksdb://") -> Any:
    settings = Settings(app_id="store-test", web_port=16998, partitions=4, store=store,
                        data_dir=str(tmp_path / "data"))  # fmt: skip
    return create_app(settings, CollectorRegistry())


def _close(*tables: Any) -> None:
    # Faust's rocksdb Store.stop() leaves the DBs to the garbage collector; close explicitly
    # so the same directory can be reopened in this process (RocksDB holds a LOCK file).
    for table in tables:
        for db in table.data._dbs.values():
            db.close()
        table.data._dbs.clear()
    gc.collect()


def _flush(table: Any) -> None:
    """What ``changelog_sent`` does once the changelog messages are acknowledged."""
    table.data.flush_pending(table.data.pending_snapshot(), {})


def _raw(table: Any, partition: int, key: str) -> Any:
    db = table.data._dbs.get(partition)
    return None if db is None else db.get(table.data._encode_key(key))


def test_rocksdb_url_builds_the_partition_routed_store(tmp_path: Path) -> None:
    app = _app(tmp_path)
    for name in ("fold-surveys", "fold-support", "fold-cancellations", "fold-customers", "merge"):
        assert isinstance(app.tables[name].data, PartitionedRocksStore), name
    memory = _app(tmp_path / "m", store="memory://")
    assert not isinstance(memory.tables["fold-surveys"].data, PartitionedRocksStore)


def test_source_table_routes_by_the_partition_in_the_key(tmp_path: Path) -> None:
    app = _app(tmp_path)
    table = app.tables["fold-surveys"]
    assert isinstance(table, SourcePartitionedTable)
    store = table.data
    # Straight to the store: Table.__setitem__ would also send a changelog message.
    for p in range(4):
        store[f"{p}|p"] = [100 + p, 1_790_000_000_000]
        store[f"{p}|d|r-{p}"] = [p, 1]
    _flush(table)
    for p in range(4):
        assert orjson.loads(_raw(table, p, f"{p}|p")) == [100 + p, 1_790_000_000_000]
        for q in set(range(4)) - {p}:
            assert _raw(table, q, f"{p}|p") is None
        assert store[f"{p}|p"][0] == 100 + p
        assert f"{p}|d|r-{p}" in store
        assert f"{p}|d|r-{(p + 1) % 4}" not in store
    del store["2|d|r-2"]
    _flush(table)
    assert "2|d|r-2" not in store and _raw(table, 2, "2|d|r-2") is None
    with pytest.raises(KeyError):
        store["3|d|missing"]
    _close(table)


def test_merge_table_routes_by_the_member_hash(tmp_path: Path) -> None:
    app = _app(tmp_path)
    table = app.tables["merge"]
    assert isinstance(table, MergeTable)
    keys = [f"nps|segment|s{i}|1h|{i}" for i in range(40)] + ["#wm|0", "#wm|3"]
    for key in keys:
        table.data[key] = {"k": key}
    _flush(table)
    for key in keys:
        p = table_partition(key, 4)
        assert orjson.loads(_raw(table, p, key)) == {"k": key}
        assert table.data[key] == {"k": key}
    assert len({table_partition(k, 4) for k in keys}) == 4  # the sample spans every DB
    _close(table)


def test_values_survive_a_reopen_of_the_data_dir(tmp_path: Path) -> None:
    app = _app(tmp_path)
    table = app.tables["fold-customers"]
    table.data["1|c|cust-9"] = [7, 1, [["all", "all"]], 0, []]
    table.data.flush_pending(table.data.pending_snapshot(), {1: 41})
    _close(table)
    again = _app(tmp_path).tables["fold-customers"]
    assert again.data["1|c|cust-9"] == [7, 1, [["all", "all"]], 0, []]
    assert again.data.persisted_offset(_tp(again, 1)) == 41
    _close(again)


def _tp(table: Any, partition: int) -> Any:
    from faust.types import TP

    return TP(table.changelog_topic_name, partition)


async def test_fold_agent_batches_on_rocksdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path that asserted in Faust's store: ``take_events`` batch writes, no current event."""
    app = _app(tmp_path)
    sent: list[tuple[str, Any]] = []

    async def record(topic: str, key: Any, value: Any, partition: Any, *a: Any, **kw: Any) -> Any:
        sent.append((topic, partition))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def flush() -> None:
        return None

    monkeypatch.setattr(app.producer, "send", record)
    monkeypatch.setattr(app.producer, "flush", flush)

    # no producer buffer runs in a test context: nothing would ever acknowledge the changelog
    async def acked() -> None:
        _flush(app.tables["fold-surveys"])

    monkeypatch.setattr(app.tables["fold-surveys"], "changelog_sent", acked)
    agent = app.agents["fold-surveys"]
    survey = {"customer_id": "c1", "survey": "nps", "occurred_at": "2026-11-24T01:00:00Z",
              "segment": "smb", "channel": "chat"}  # fmt: skip
    async with agent.test_context() as ctx:
        for i, score in enumerate((3, 10, 9)):
            await ctx.put(
                orjson.dumps({**survey, "response_id": f"r{i}", "score": score}), key=b"c1"
            )
        await asyncio.sleep(0.5)  # take_events(within=0.2) closes the batch
    table = app.tables["fold-surveys"]
    # every key is in the DB of its partition (0: test_context puts on partition 0)
    assert set(table.data._dbs) == {0}
    items = [(table.data._decode_key(k), orjson.loads(v)) for k, v in table.data._dbs[0].items()
             if k != table.data.offset_key]  # fmt: skip
    nps = [v for k, v in items if "|k|nps|all|all|1h|" in k]
    assert nps == [[2, [3, 2, 0, 1]]]  # marker = last offset; n, promoters, passives, detractors
    assert table.data["0|p"][0] == 2
    _close(table)


async def test_changelog_sent_waits_for_every_changelog_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The barrier fold/merge use instead of producer.flush() (see streams/tables.py), on
    Faust's one-message path (no started aiokafka producer here)."""
    app = _app(tmp_path, store="memory://")
    table = app.tables["fold-surveys"]
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = []

    def send_soon(**kwargs: Any) -> Any:
        fut = loop.create_future()
        fut.message = mock.Mock(partition=kwargs["partition"], key=kwargs["key"])  # type: ignore[attr-defined]
        futures.append(fut)
        return fut

    monkeypatch.setattr(table.changelog_topic, "send_soon", send_soon)
    table["1|p"] = [5, None]  # staged: sent by changelog_sent, the latest value per key
    table["2|p"] = [6, None]
    del table["1|p"]
    assert futures == []
    waiter = asyncio.ensure_future(table.changelog_sent())
    await asyncio.sleep(0.01)
    assert [f.message.partition for f in futures] == [1, 2]  # type: ignore[attr-defined]
    assert not waiter.done()
    futures[0].set_result(None)
    await asyncio.sleep(0.01)
    assert not waiter.done()
    futures[1].set_result(None)
    await asyncio.wait_for(waiter, 1)
    await asyncio.wait_for(table.changelog_sent(), 1)  # nothing in flight: returns at once

    table["2|p"] = [7, None]
    waiter = asyncio.ensure_future(table.changelog_sent())
    await asyncio.sleep(0.01)
    futures[-1].set_exception(RuntimeError("broker said no"))
    with pytest.raises(RuntimeError, match="broker said no"):
        await asyncio.wait_for(waiter, 1)


class _FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[Any, Any]] = []

    def append(self, *, key: Any, value: Any, timestamp: Any) -> Any:
        self.records.append((key, value))
        return object()


class _FakeAio:
    """The part of aiokafka's producer that ``send_staged`` uses; acks come from the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, asyncio.Future[Any]]] = []  # partition, n, future

    def create_batch(self) -> _FakeBatch:
        return _FakeBatch()

    async def send_batch(self, batch: _FakeBatch, topic: str, *, partition: int) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((partition, len(batch.records), fut))
        return fut

    def ack(self, next_offset: dict[int, int]) -> None:
        for partition, n, fut in self.sent:
            if not fut.done():
                meta = mock.Mock(offset=next_offset.get(partition, 0))
                meta.topic_partition.partition = partition
                next_offset[partition] = meta.offset + n
                fut.set_result(meta)


async def test_writes_reach_the_db_only_after_their_changelog_acks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local DB stays a prefix of the changelog (streams/stores.py, "Deferred writes"): a
    SIGKILL before the acks must not leave a seal in the DB whose changelog messages (and the
    batch's partials) never left the process."""
    from faust.types import TP

    app = _app(tmp_path)
    table = app.tables["fold-surveys"]
    fake = _FakeAio()
    monkeypatch.setattr(table, "_batch_producer", lambda: fake)
    topic = table.changelog_topic_name
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {TP(topic, p) for p in range(4)})
    store = table.data
    table["1|k|old"] = [1, [1]]
    waiter = asyncio.ensure_future(table.changelog_sent())
    await asyncio.sleep(0.01)
    fake.ack({1: 10})
    await asyncio.wait_for(waiter, 1)
    assert orjson.loads(_raw(table, 1, "1|k|old")) == [1, [1]]
    assert store.persisted_offset(_tp(table, 1)) == 10

    # a batch: new values, a delete; readable at once, not in the DB
    table["1|p"] = [5, 1]
    table["1|k|new"] = [5, [2]]
    del table["1|k|old"]
    assert table["1|p"] == [5, 1] and "1|k|old" not in store and table.get("1|k|old") is None
    assert _raw(table, 1, "1|p") is None and _raw(table, 1, "1|k|old") is not None
    assert sorted(store.keys()) == ["1|k|new", "1|p"]  # iteration sees the pending writes
    waiter = asyncio.ensure_future(table.changelog_sent())
    await asyncio.sleep(0.01)
    table["1|p"] = [6, 1]  # written after the barrier's snapshot: belongs to the next one
    assert not waiter.done() and _raw(table, 1, "1|p") is None
    assert store.persisted_offset(_tp(table, 1)) == 10  # nothing acked yet
    fake.ack({1: 11})
    await asyncio.wait_for(waiter, 1)
    assert orjson.loads(_raw(table, 1, "1|p")) == [5, 1]  # the acknowledged value
    assert _raw(table, 1, "1|k|old") is None
    assert store.persisted_offset(_tp(table, 1)) == 13  # three messages from offset 11
    assert table["1|p"] == [6, 1]  # the newer value is still read first

    # a send the broker refuses: the DB keeps the acknowledged state
    table["2|p"] = [7, 1]
    waiter = asyncio.ensure_future(table.changelog_sent())
    await asyncio.sleep(0.01)
    for _p, _n, fut in fake.sent:
        if not fut.done():
            fut.set_exception(RuntimeError("broker said no"))
    with pytest.raises(RuntimeError, match="broker said no"):
        await asyncio.wait_for(waiter, 1)
    assert _raw(table, 2, "2|p") is None and store.persisted_offset(_tp(table, 2)) is None

    # a SIGKILL now: what reopens is exactly the acknowledged state and its offsets
    _close(table)
    again = _app(tmp_path).tables["fold-surveys"]
    assert again.data["1|p"] == [5, 1]
    assert "2|p" not in again.data and "1|k|old" not in again.data
    assert again.data.persisted_offset(_tp(again, 1)) == 13
    _close(again)


def test_every_db_shares_one_bounded_cache_and_write_buffer_manager(tmp_path: Path) -> None:
    """RocksDB memory is bounded per process, not per DB (streams/stores.py, shared_memory):
    memtables of every table and partition are charged to one write buffer manager, and
    data, index and filter blocks read from any DB to one block cache."""
    from streams import stores

    app = _app(tmp_path)
    cache, manager = stores.shared_memory()
    assert stores.shared_memory() == (cache, manager)
    tables = [app.tables["fold-surveys"], app.tables["merge"]]
    for table in tables:
        assert isinstance(table.data.rocksdb_options, stores.BoundedOptions)
    memtables_before, cache_before = manager.get_usage(), cache.get_usage()
    keys = [f"{p}|d|e-{i}" for p in range(4) for i in range(2000)]
    for key in keys:
        tables[0].data[key] = [7, "x" * 100]
    for i in range(500):
        tables[1].data[f"nps|all|all|5m|{i}"] = {"s:0": [i, [1, 1, 0, 0]]}
    for table in tables:
        _flush(table)
    # the memtables of both tables (8 DBs) are accounted in the one manager, which charges
    # them to the one block cache: a single limit for memtables and blocks
    assert manager.get_usage() > memtables_before
    assert cache.get_usage() > cache_before
    assert cache.get_usage() <= stores.SHARED_CACHE_BYTES
    assert all(tables[0].data[key] == [7, "x" * 100] for key in keys)
    _close(*tables)


def test_keys_are_decoded_like_fausts_codec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orjson shortcut for keys (an expiry round lists every key of a table) gives what
    Faust's json codec gives, for keys written by us and for keys restored from a changelog."""
    from faust.types import TP

    app = _app(tmp_path)
    table = app.tables["fold-surveys"]
    store = table.data
    assert store._fast_keys
    topic = table.changelog_topic_name
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {TP(topic, 1)})
    keys = ['1|d|ünï "q" \\ ☃', "1|k|nps|segment|a+b|5m|-3", "1|p"]
    for key in keys:
        store[key] = [1]
    _flush(table)
    assert sorted(store.keys()) == sorted(keys)
    faust_decode = super(type(store), store)._decode_key
    for raw in store._iterkeys():
        assert store._decode_key(raw) == faust_decode(raw)
    _close(table)


def test_expiry_reads_a_rocksdb_table_lazily_and_a_memory_table_as_a_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faust.types import TP

    from streams.stores import scan_keys

    memory = _app(tmp_path / "m", store="memory://").tables["fold-surveys"]
    memory.data["0|p"] = [1, None]
    assert scan_keys(memory) == ["0|p"]
    app = _app(tmp_path)
    table = app.tables["fold-surveys"]
    topic = table.changelog_topic_name
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {TP(topic, 0), TP(topic, 1)})
    for i in range(30):
        table.data[f"{i % 2}|d|e-{i:02d}"] = [i, 1]
    _flush(table)
    keys = scan_keys(table)
    assert not isinstance(keys, list)
    first = [next(keys) for _ in range(5)]
    # the table is written between two chunks of a round (the fold commits in between)
    for i in range(30, 40):
        table.data[f"0|d|e-{i:02d}"] = [i, 1]
    del table.data["1|d|e-29"]
    _flush(table)
    rest = list(keys)
    seen = first + rest
    assert len(seen) == len(set(seen))
    assert {f"{i % 2}|d|e-{i:02d}" for i in range(29)} <= set(seen)  # every key of the start
    _close(table)


def test_pending_writes_are_compact(tmp_path: Path) -> None:
    """A pending write keeps its encoded key and value until the batch's acks: in buffers of
    their own size, not orjson's >= 4 KiB each (``codecs.compact``)."""
    app = _app(tmp_path)
    table = app.tables["fold-surveys"]
    store = table.data
    store["0|p"] = [0, 0]  # opens partition 0's DB outside the measurement
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000):
            store[f"0|d|resp-{i:07d}"] = 1_790_000_000_000 + i
        held = (tracemalloc.get_traced_memory()[0] - before) / 1000
    finally:
        tracemalloc.stop()
    assert len(store._pending) == 1001
    assert held < 1000, held  # ~8.3 KB a write before
    assert store["0|d|resp-0000007"] == 1_790_000_000_007
    _flush(table)
    assert orjson.loads(_raw(table, 0, "0|d|resp-0000999")) == 1_790_000_000_999
    _close(table)
