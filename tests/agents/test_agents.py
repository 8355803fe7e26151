"""Agent tests with Faust's ``agent.test_context()``: no broker, the real agents and tables."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from unittest import mock

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.aggregate import table_partition
from streams.app import create_app
from streams.settings import Settings
from streams.tables import MergeTable, SourcePartitionedTable

NOW_ISO = "2026-11-24T01:00:00Z"


@pytest.fixture
def app_and_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Any, CollectorRegistry, list[tuple[str, Any, Any, Any]]]:
    registry = CollectorRegistry()
    app = create_app(Settings(app_id="agent-test", web_port=16999, partitions=4), registry)
    sent: list[tuple[str, Any, Any, Any]] = []

    async def record(
        topic: str, key: Any, value: Any, partition: Any, *args: Any, **kw: Any
    ) -> Any:
        sent.append((topic, key, value, partition))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def flush() -> None:
        return None

    monkeypatch.setattr(app.producer, "send", record)
    monkeypatch.setattr(app.producer, "flush", flush)
    for table in app.tables.values():  # no producer buffer runs to acknowledge the changelog
        monkeypatch.setattr(table, "changelog_sent", flush)
    return app, registry, sent


def _survey(rid: str, score: int, **extra: Any) -> bytes:
    return orjson.dumps({"response_id": rid, "customer_id": "c1", "survey": "nps", "score": score,
                         "occurred_at": NOW_ISO, "segment": "smb", "channel": "chat", **extra})  # fmt: skip


async def test_fold_agent_folds_dedupes_and_dead_letters(app_and_sent: Any) -> None:
    app, registry, sent = app_and_sent
    agent = app.agents["fold-surveys"]
    async with agent.test_context() as ctx:
        await ctx.put(_survey("r1", 3, comment="too slow"), key=b"c1")
        await ctx.put(_survey("r2", 10), key=b"c1")
        await ctx.put(_survey("r1", 3), key=b"c1")  # duplicate id
        await ctx.put(b"{broken", key=b"c1")
        await asyncio.sleep(0.5)  # take_events(within=0.2) closes the batch
    table = app.tables["fold-surveys"]
    nps_all = [v for k, v in table.items() if "|k|nps|all|all|1h|" in k]
    assert nps_all and nps_all[0][1] == [2, 1, 0, 1]  # n, promoters, passives, detractors

    def events(outcome: str) -> float | None:
        return registry.get_sample_value(
            "cx_events_total", {"topic": "cx.survey-responses", "outcome": outcome}
        )

    assert events("applied") == 2 and events("duplicate") == 1 and events("dead_letter") == 1
    topics = [s[0] for s in sent]
    assert topics.count("cx.dead-letter") == 1
    assert topics.count("cx.followups") == 1  # the detractor r1, once
    dl = orjson.loads(next(s[2] for s in sent if s[0] == "cx.dead-letter"))
    assert dl["reason"] == "not_json" and dl["raw"] == "{broken"
    partials = [s for s in sent if s[0] == "agent-test-partials" and s[1] != b"#wm"]
    assert {s[1] for s in partials} >= {b"nps|all|all", b"nps|segment|smb", b"nps|channel|chat"}
    assert (
        registry.get_sample_value(
            "cx_responses_total",
            {"survey": "nps", "category": "detractor", "segment": "smb", "channel": "chat"},
        )
        == 1
    )


async def test_merge_agent_emits_scores_and_gauges(app_and_sent: Any) -> None:
    app, registry, sent = app_and_sent
    merge = app.agents["merge"]
    service = app.cx_merge
    service.owned_partitions = lambda: {0, 1, 2, 3}  # no consumer group in a test context
    snapshot = {"s": "cx.survey-responses:0", "wm": 1_795_482_000_000, "ts": None,
                "b": [["1h", 29_924_700, 5, [40, 30, 10, 0]]]}  # fmt: skip
    async with merge.test_context() as ctx:
        await ctx.put(orjson.dumps({"wm_topic": "cx.survey-responses", "s": "cx.survey-responses:0",
                                    "wm": 1_795_482_000_000}), key=b"#wm")  # fmt: skip
        await ctx.put(orjson.dumps(snapshot), key=b"nps|all|all")
        await asyncio.sleep(0.3)
        await service.tick()
    table = app.tables["merge"]
    assert table["nps|all|all|1h|29924700"] == {"cx.survey-responses:0": [5, [40, 30, 10, 0]]}
    scores = {s[1].decode(): orjson.loads(s[2]) for s in sent if s[0] == "cx.scores"}
    rec = scores["nps|1h|all=all"]
    assert rec["value"] == pytest.approx(100 * (30 - 0) / 40) and rec["n"] == 40
    assert rec["window_end"] == "2026-11-24T01:01:00.000Z" and rec["revision"] == 0
    assert scores["nps|5m|all=all"]["value"] is None  # nothing in the last 5 minutes
    labels = {"metric": "nps", "window": "1h", "dimension": "all", "member": "all"}
    assert registry.get_sample_value("cx_score", labels) == pytest.approx(75.0)
    assert registry.get_sample_value("cx_score_samples", labels) == 40
    assert registry.get_sample_value("cx_score", {**labels, "window": "5m"}) is None


async def test_merge_agent_emits_live_input_without_waiting_for_a_tick(
    app_and_sent: Any,
) -> None:
    app, _registry, sent = app_and_sent
    merge = app.agents["merge"]
    service = app.cx_merge
    service.owned_partitions = lambda: {0, 1, 2, 3}
    now_ms = int(time.time() * 1000)

    def snapshot(ingested_ms: int) -> bytes:
        return orjson.dumps({"s": "cx.survey-responses:0", "wm": 1_795_482_000_000,
                             "ts": ingested_ms, "b": [["1h", 29_924_700, 5, [40, 30, 10, 0]]]})  # fmt: skip

    async with merge.test_context() as ctx:
        await service.tick()  # the registry of owned partitions (a running worker's first tick)
        await ctx.put(orjson.dumps({"wm_topic": "cx.survey-responses", "s": "cx.survey-responses:0",
                                    "wm": 1_795_482_000_000}), key=b"#wm")  # fmt: skip
        await ctx.put(snapshot(now_ms), key=b"nps|all|all")  # live
        await ctx.put(snapshot(now_ms - 60_000), key=b"nps|segment|smb")  # a replay's
        await asyncio.sleep(0.3)
        scores = {s[1].decode(): orjson.loads(s[2]) for s in sent if s[0] == "cx.scores"}
        # no tick since the partials came in
        assert scores["nps|1h|all=all"]["n"] == 40
        assert "nps|1h|segment=smb" not in scores  # left to the tick
        await service.tick()
    scores = {s[1].decode(): orjson.loads(s[2]) for s in sent if s[0] == "cx.scores"}
    assert scores["nps|1h|segment=smb"]["n"] == 40


async def test_tables_name_their_changelog_partition() -> None:
    """Guard for faust-streaming upgrades: ``table[key] = value`` must reach our on_key_set
    (ManagedUserDict), which stages the message; changelog_sent() sends it to the partition
    partition_for_key answers from the key (no current event needed)."""
    app = create_app(Settings(app_id="tables-test", web_port=16999, partitions=4))
    fold = app.tables["fold-surveys"]
    merge = app.tables["merge"]
    assert isinstance(fold, SourcePartitionedTable) and isinstance(merge, MergeTable)
    assert fold.partition_for_key("3|k|nps|all|all|1h|1") == 3
    assert merge.partition_for_key("nps|all|all|1h|1") == table_partition("nps|all|all|1h|1", 4)
    assert merge.partition_for_key("#wm|2") == 2
    calls: list[Any] = []

    def fake_send(partition: Any, key: Any, value: Any, *a: Any, **kw: Any) -> Any:
        calls.append((partition, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    fold.send_changelog = fake_send  # type: ignore[method-assign]
    fold["3|x"] = [1]  # outside any stream iteration: stock Table would raise
    fold["3|x"] = [2]
    fold["1|y"] = [3]
    del fold["1|y"]
    assert calls == [] and fold.data["3|x"] == [2] and "1|y" not in fold.data
    await fold.changelog_sent()  # no started aiokafka producer here: Faust's path per message
    assert calls == [(3, "3|x", [2]), (1, "1|y", None)]


async def test_table_get_answers_like_mapping_get() -> None:
    """Our tables' exception-free ``get`` (streams/tables.py) answers as ``Mapping.get`` and
    still reports every read to Faust's sensors (``on_key_get``)."""
    app = create_app(Settings(app_id="tables-get-test", web_port=16998, partitions=4))
    fold = app.tables["fold-surveys"]
    assert isinstance(fold, SourcePartitionedTable)
    fold.data["3|x"] = [1, 2]
    fold.data["3|z"] = 0  # falsy values are values
    seen: list[Any] = []
    fold.on_key_get = seen.append  # type: ignore[method-assign]
    assert fold.get("3|x") == [1, 2]
    assert fold.get("3|z", "d") == 0
    assert fold.get("3|y") is None
    assert fold.get("3|y", "d") == "d"
    assert seen == ["3|x", "3|z", "3|y", "3|y"]


class _FakeBatch:
    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[Any, Any]] = []

    def append(self, *, key: Any, value: Any, timestamp: Any) -> Any:
        if len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return True


class _FakeAioProducer:
    """The part of aiokafka's AIOKafkaProducer that streams/tables.py uses."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.batches: list[tuple[str, int, list[tuple[Any, Any]]]] = []
        self.futures: list[asyncio.Future[Any]] = []

    def create_batch(self) -> _FakeBatch:
        return _FakeBatch(self.room)

    async def send_batch(self, batch: _FakeBatch, topic: str, *, partition: int) -> Any:
        self.batches.append((topic, partition, batch.records))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut


async def test_staged_changelog_goes_out_as_record_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path: one record batch per changelog partition, the latest value per key, the
    same bytes as Faust's json codec, persisted offsets per batch, errors raised."""
    import aiokafka
    from faust.transport.drivers import aiokafka as faust_aiokafka

    # what _batch_producer relies on in faust-streaming 0.15 / aiokafka
    assert hasattr(faust_aiokafka.Producer, "_ensure_producer")
    assert hasattr(aiokafka.AIOKafkaProducer, "create_batch")
    assert hasattr(aiokafka.AIOKafkaProducer, "send_batch")
    app = create_app(Settings(app_id="tables-test", web_port=16999, partitions=4))
    table = app.tables["fold-surveys"]
    assert table._codec_is_orjson()  # else every write takes Faust's slow path
    fake = _FakeAioProducer(room=2)
    monkeypatch.setattr(table, "_batch_producer", lambda: fake)
    persisted: list[tuple[int, int]] = []
    monkeypatch.setattr(
        table.data, "set_persisted_offset", lambda tp, off: persisted.append((tp.partition, off))
    )
    table["1|a"] = [1, [1]]
    table["1|a"] = [2, [1, 2]]
    table["1|b"] = [3, None]
    table["1|c"] = [4, None]
    table["2|d"] = [5, None]
    del table["2|d"]
    waiter = asyncio.ensure_future(table.changelog_sent())
    await asyncio.sleep(0.01)
    name = table.changelog_topic.get_topic_name()
    ser = app.serializers
    assert [(t, p, len(r)) for t, p, r in fake.batches] == [
        (name, 1, 2),
        (name, 1, 1),
        (name, 2, 1),
    ]
    assert fake.batches[0][2][0] == (
        ser.dumps_key(None, "1|a", serializer=table.key_serializer),
        ser.dumps_value(None, [2, [1, 2]], serializer=table.value_serializer),
    )
    assert fake.batches[2][2] == [(ser.dumps_key(None, "2|d", serializer="json"), None)]
    assert not waiter.done()  # waits for the acks
    for i, fut in enumerate(fake.futures):
        meta = mock.Mock(offset=10 * i)
        meta.topic_partition.partition = fake.batches[i][1]
        fut.set_result(meta)
    await asyncio.wait_for(waiter, 1)
    assert persisted == [(1, 1), (1, 10), (2, 20)]  # last offset of each batch
    table["3|e"] = [6, None]
    sending = asyncio.ensure_future(table.changelog_sent())
    await asyncio.sleep(0.01)
    fake.futures[-1].set_exception(RuntimeError("broker said no"))
    with pytest.raises(RuntimeError, match="broker said no"):
        await sending
    await asyncio.wait_for(table.changelog_sent(), 1)  # nothing staged or in flight


async def test_merge_table_counts_changelog_batches_written_into_it() -> None:
    """The merger's cached window sums are void once the changelog wrote into the table
    (``MergeTable.recovered``, read by ``Merger.window_sum``): Faust 0.15 recovery and standby
    replication call ``apply_changelog_batch``."""
    app = create_app(Settings(app_id="tables-recovered-test", web_port=16997, partitions=4))
    merge = app.tables["merge"]
    assert isinstance(merge, MergeTable)
    assert merge.recovered == 0
    merge.apply_changelog_batch([])
    merge.apply_changelog_batch([])
    assert merge.recovered == 2


async def test_table_counts_reads_and_writes_into_faust_monitor() -> None:
    """With Faust's Monitor as the only sensor, our tables count reads and writes into its
    table state directly (streams/tables.py, ``_counts``): the numbers Faust's sensor calls
    give. Another sensor beside it: every call goes through Faust's sensor delegate again."""
    from faust.sensors.base import Sensor
    from faust.sensors.monitor import Monitor

    app = create_app(Settings(app_id="tables-sensor-test", web_port=16996, partitions=4))
    app.sensors.add(app.monitor)  # what App.on_init_dependencies does when the worker starts
    fold = app.tables["fold-surveys"]
    assert isinstance(fold, SourcePartitionedTable)
    assert [type(s) for s in app.sensors] == [Monitor]

    def state() -> tuple[int, int, int]:
        t = app.monitor.tables.get(fold.name)
        return (0, 0, 0) if t is None else (t.keys_retrieved, t.keys_updated, t.keys_deleted)

    def use(table: SourcePartitionedTable) -> None:
        table["1|a"] = [1]
        table.get("1|a")
        table.get("1|missing")
        table.write_many({"1|b": [2], "1|c": [3], "1|a": None, "1|never": None})
        del table["1|b"]

    use(fold)  # before any send_staged: Faust's own sensor calls
    by_faust = state()
    assert by_faust == (4, 3, 2)  # pop() reads the key first
    await fold.send_staged()  # looks at the sensors: Monitor alone
    assert fold._counts is not None
    use(fold)
    assert state() == tuple(2 * x for x in by_faust)
    assert dict(fold.data.data) == {"1|c": [3]}

    class Spy(Sensor):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def on_table_get(self, table: Any, key: Any) -> None:
            self.calls.append(f"get {key}")

        def on_table_set(self, table: Any, key: Any, value: Any) -> None:
            self.calls.append(f"set {key}")

        def on_table_del(self, table: Any, key: Any) -> None:
            self.calls.append(f"del {key}")

    spy = Spy()
    app.sensors.add(spy)
    await fold.send_staged()
    assert fold._counts is None
    use(fold)
    assert state() == tuple(3 * x for x in by_faust)
    assert "get 1|missing" in spy.calls and "set 1|c" in spy.calls and "del 1|a" in spy.calls
    assert "del 1|never" not in spy.calls


async def test_write_many_writes_what_key_by_key_writes() -> None:
    """``write_many`` on a memory store leaves the store and the staged changelog messages as
    ``table[key] = value`` / ``table.pop(key, None)`` key by key leave them."""
    app = create_app(Settings(app_id="tables-write-many", web_port=16995, partitions=4))
    app.sensors.add(app.monitor)
    fast, slow = app.tables["fold-surveys"], app.tables["fold-support"]
    assert isinstance(fast, SourcePartitionedTable) and isinstance(slow, SourcePartitionedTable)
    await fast.send_staged()
    assert fast._counts is not None
    for t in (fast, slow):
        t.data.data.update({"0|old": [0], "0|gone": [1]})
    writes = {"0|new": [1, [2]], "0|old": [5], "0|gone": None, "0|absent": None, "1|x": 7}
    fast.write_many(writes)
    for key, value in writes.items():
        if value is None:
            slow.pop(key, None)
        else:
            slow[key] = value
    assert dict(fast.data.data) == dict(slow.data.data) == {"0|new": [1, [2]], "0|old": [5],
                                                            "1|x": 7}  # fmt: skip
    assert fast._staged == slow._staged == {"0|new": [1, [2]], "0|old": [5], "0|gone": None,
                                            "1|x": 7}  # fmt: skip
