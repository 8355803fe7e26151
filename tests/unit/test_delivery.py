"""Batch delivery (streams/delivery.py): still matches the Faust code it replaces, and hands
over, throttles, skips and acks records like the stock path."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from faust.sensors.monitor import Monitor
from faust.streams import Stream
from faust.transport.conductor import ConductorCompiler
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.queues import FlowControlEvent

from streams.delivery import BatchBuffer, Handed, LeanConsumer, LeanTransport
from streams.state import Record

# sha256 (first 16 hex digits) of the upstream source (faust-streaming 0.15.3, mode 0.4).
# If one changes: read the upstream change, port it to streams/delivery.py, update the hash.
REPLACED: dict[Callable[..., Any], str] = {
    # done once per partition's list by LeanConsumer._wait_next_records / _to_buffer:
    Consumer._drain_messages: "44a2500309e83c63",  # read offsets, gaps, commit_every, flow
    Consumer.getmany: "4b168d84882a70d6",  # flow, generation, active partitions, end offsets
    ConductorCompiler.build: "837cf521368c1ee4",  # on_message: flow control, back-pressure
    Stream._py_aiter: "3a48ee257a65435b",  # generation skip, track_message
    Stream.take_events: "607d48aead118ba8",  # batching, acks
    Consumer.track_message: "217d7f1399a4cd8e",  # LeanConsumer.track_batch
    Consumer.ack: "5fcf41cf45153475",  # LeanConsumer.ack_batch
    Monitor.on_message_in: "b2a9a9045b2f456c",  # LeanConsumer.track_batch
    # relied on as they are:
    Consumer._wait_next_records: "6218e1969a636b3f",  # returns (records, active partitions)
    Consumer.wait_empty: "e4662fe24f094819",  # waits while an unacked entry is not `acked`
    Consumer._clean_unacked_messages: "11be2587e71c9162",
    Consumer.on_buffer_full: "c8961679e0bcdce5",
    Consumer.on_buffer_drop: "4b57e8a418d5ad9c",
    FlowControlEvent.manage_queue: "a9a01679eaacf42c",
    FlowControlEvent.clear: "dda5e40d80288a8f",
    FlowControlEvent.resume: "4dcdc1253fd0dcb4",
}


@pytest.mark.parametrize("fn", list(REPLACED), ids=lambda f: f.__qualname__)
def test_upstream_code_is_the_version_delivery_replaces(fn: Callable[..., Any]) -> None:
    digest = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]
    assert digest == REPLACED[fn], f"{fn.__qualname__} changed upstream: review streams/delivery*"


def _rec(p: int, o: int) -> Record:
    return Record(p, o, b"{}", 1_000 + o, b"k")


class _Consumer:
    """What BatchBuffer calls on LeanConsumer, recorded."""

    def __init__(self) -> None:
        self.tracked: list[int] = []
        self.acked: list[int] = []
        self.full: list[TP] = []
        self.dropped: list[TP] = []
        self._unacked_messages: set[Any] = set()  # Faust's: a WeakSet

    def track_batch(self, topic: str, batch: list[Record]) -> Handed:
        assert topic == "t"
        self.tracked += [r.offset for r in batch]
        tracker = Handed(len(batch))
        self._unacked_messages.add(tracker)
        return tracker

    def ack_batch(self, topic: str, batch: list[Record], tracker: Handed) -> None:
        self.acked += [r.offset for r in batch]
        self._unacked_messages.discard(tracker)
        tracker.acked = True

    def on_buffer_full(self, tp: TP) -> None:
        assert type(tp) is TP  # Faust's Consumer._get_active_partitions asserts it
        self.full.append(tp)

    def on_buffer_drop(self, tp: TP) -> None:
        assert type(tp) is TP
        self.dropped.append(tp)


class _Topics:
    acking_topics = {"t"}

    def acks_enabled_for(self, topic: str) -> bool:
        return topic in self.acking_topics


class _App:
    def __init__(self) -> None:
        self.consumer = _Consumer()
        self.topics = _Topics()
        self.flow_control = FlowControlEvent()  # starts suspended, like the app's
        self.flow_control.resume()  # done by the app once started
        self.consumer_generation_id = 1


def _buffer(app: Any, high_water: int = 100) -> BatchBuffer:
    return BatchBuffer(app, high_water=high_water, topic="t")


def _put(buffer: BatchBuffer, *records: Record, generation: int = 1) -> None:
    """As the fetch does: a partition's records at a time (aiokafka's TopicPartition)."""
    for r in records:
        buffer.put(TopicPartition("t", r.partition), [r], generation)  # type: ignore[arg-type]


async def test_batches_are_acked_only_when_the_next_is_asked_for() -> None:
    app = _App()
    buffer = _buffer(app)
    buffer.put(TopicPartition("t", 0), [_rec(0, o) for o in range(5)], 1)  # type: ignore[arg-type]
    it = buffer.batches(3, within=1.0)
    first = await it.__anext__()  # full: no waiting for `within`
    assert [r.offset for r in first] == [0, 1, 2]
    assert app.consumer.tracked == [0, 1, 2] and app.consumer.acked == []
    assert buffer.size == 2  # the rest of the partition's list waits
    second = await asyncio.wait_for(it.__anext__(), 5.0)  # the rest, after `within`
    assert [r.offset for r in second] == [3, 4]
    assert app.consumer.acked == [0, 1, 2]  # the first batch, now that it was folded
    await it.aclose()  # the agent stopped or crashed while folding the second batch
    assert app.consumer.acked == [0, 1, 2]


async def test_the_batch_of_a_crashed_agent_is_untracked_not_acked() -> None:
    """``BatchBuffer.abandon`` (streams/supervision.py calls it when an agent crashed): Faust
    stops waiting for the batch (``Consumer.wait_empty`` waited for it forever when the worker
    stopped after a crash) and nothing acks it (no commit covers it, it is read again). The
    crashed agent's generator, closed late, leaves its restarted agent's batch alone."""
    app = _App()
    buffer = _buffer(app)
    _put(buffer, *(_rec(0, o) for o in range(6)))
    crashed = buffer.batches(3, within=0.05)
    assert [r.offset for r in await crashed.__anext__()] == [0, 1, 2]
    assert [t.size for t in app.consumer._unacked_messages] == [3]
    assert buffer.abandon() == 3  # the agent raised while folding it
    assert app.consumer._unacked_messages == set() and app.consumer.acked == []
    assert buffer.pending() == {0}  # offsets 3..5 still wait here
    restarted = buffer.batches(3, within=0.05)
    second = await restarted.__anext__()
    assert [r.offset for r in second] == [3, 4, 5] and buffer.handed is second
    await crashed.aclose()  # the crashed agent's generator, finalized only now
    assert buffer.handed is second and buffer.out == {0}
    assert buffer.abandon() == 3 and app.consumer.acked == []
    await restarted.aclose()


async def test_a_partial_batch_waits_for_within_then_goes() -> None:
    app = _App()
    buffer = _buffer(app)
    it = buffer.batches(10, within=0.2)
    _put(buffer, _rec(0, 0))
    t0 = asyncio.get_running_loop().time()
    assert [r.offset for r in await it.__anext__()] == [0]  # idle before: at once
    _put(buffer, _rec(0, 1))
    assert [r.offset for r in await it.__anext__()] == [1]
    assert asyncio.get_running_loop().time() - t0 >= 0.19  # within after the previous batch
    await it.aclose()


async def test_records_of_an_older_generation_are_skipped_not_tracked() -> None:
    app = _App()
    buffer = _buffer(app)
    _put(buffer, _rec(0, 7), generation=1)
    _put(buffer, _rec(0, 8), generation=2)
    app.consumer_generation_id = 2  # a rebalance happened after the fetch of offset 7
    it = buffer.batches(10, within=0.0)
    assert [r.offset for r in await it.__anext__()] == [8]
    assert app.consumer.tracked == [8] and buffer.size == 0
    await it.aclose()


async def test_records_of_a_topic_without_acks_are_not_tracked() -> None:
    app = _App()
    app.topics.acking_topics = set()
    buffer = _buffer(app)
    _put(buffer, _rec(0, 1), _rec(0, 2))
    it = buffer.batches(10, within=0.0)
    assert [r.offset for r in await it.__anext__()] == [1, 2]
    await it.__anext__() if buffer.size else None
    assert app.consumer.tracked == [] and app.consumer._unacked_messages == set()
    await it.aclose()


async def test_acking_topics_are_read_per_list() -> None:
    """The conductor fills ``acking_topics`` after the agent subscribed (and its generator
    started): read once at the start, no list was ever tracked or acked, so nothing was
    committed (the first worker of test_redeliver.py's ``after-commits`` never caught up)."""
    app = _App()
    app.topics.acking_topics = set()
    buffer = _buffer(app)
    it = buffer.batches(10, within=0.0)
    waiting = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0.01)
    app.topics.acking_topics = {"t"}
    _put(buffer, _rec(0, 1))
    assert [r.offset for r in await asyncio.wait_for(waiting, 1.0)] == [1]
    _put(buffer, _rec(0, 2))
    await it.__anext__()
    assert app.consumer.tracked == [1, 2] and app.consumer.acked == [1]
    await it.aclose()


async def test_a_full_buffer_pauses_its_partitions_until_half_empty() -> None:
    app = _App()
    buffer = _buffer(app, high_water=4)
    _put(buffer, *(_rec(p, o) for o in range(3) for p in (0, 1)))
    assert app.consumer.full == [TP("t", 1), TP("t", 0)]  # the 4th and 5th put
    it = buffer.batches(3, within=0.0)
    await it.__anext__()  # 3 left: above half
    assert app.consumer.dropped == []
    await it.__anext__()  # 0 left
    assert sorted(app.consumer.dropped) == [TP("t", 0), TP("t", 1)]
    await it.aclose()


async def test_revocation_clears_the_buffer() -> None:
    app = _App()
    buffer = _buffer(app)
    _put(buffer, _rec(0, 1), _rec(0, 2))
    app.flow_control.suspend()
    app.flow_control.clear()  # App._on_partitions_revoked clears the agents' queues
    assert not buffer.queue and buffer.size == 0
    it = buffer.batches(10, within=0.0)
    waiting = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # flow suspended: nothing handed over
    app.flow_control.resume()
    _put(buffer, _rec(0, 3))
    assert [r.offset for r in await asyncio.wait_for(waiting, 1.0)] == [3]
    await it.aclose()


async def test_pending_names_partitions_waiting_or_being_folded() -> None:
    app = _App()
    buffer = _buffer(app)
    _put(buffer, _rec(0, 1), _rec(1, 1), _rec(2, 1))
    assert buffer.pending() == {0, 1, 2}
    it = buffer.batches(2, within=0.0)
    await it.__anext__()  # partitions 0 and 1 handed out, 2 waits
    assert buffer.pending() == {0, 1, 2}
    await it.__anext__()  # the first list acked
    assert buffer.pending() == {2}
    await it.aclose()  # the agent stopped while folding it: nothing acked, nothing pending
    assert buffer.pending() == set() and app.consumer.acked == [1, 1]


# --- LeanConsumer: the fetch result into the buffers, tracking and acks -------------------


class _Monitor(Monitor):
    def __init__(self) -> None:  # the counters on_message_in updates, nothing else
        self.messages_received_total = 0
        self.messages_active = 0
        self.messages_received_by_topic: Any = defaultdict(int)
        self.tp_read_offsets: dict[Any, int] = {}
        self.end_offsets: dict[Any, int] = {}

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        self.end_offsets[tp] = offset


def _lean(app: _App, buffers: dict[str, BatchBuffer]) -> Any:
    """A LeanConsumer with just the state the batch path reads (no broker, no thread)."""
    consumer: Any = LeanConsumer.__new__(LeanConsumer)
    transport: Any = LeanTransport.__new__(LeanTransport)
    transport.buffers, transport.batch = buffers, True
    app.monitor = _Monitor()  # type: ignore[attr-defined]
    consumer.__dict__.update(
        transport=transport, app=app, flow_active=True, _read_offset=defaultdict(lambda: None),
        _buffered_partitions=set(), _commit_every=None, _n_acked=0, _gap=defaultdict(list),
        _committed_offset=defaultdict(lambda: None), _acked=defaultdict(list),
        _acked_index=defaultdict(set), _unacked_messages=set(), _waiting_for_ack=None,
        _stopped=asyncio.Event(), _crashed=asyncio.Event(), gaps=[],
    )  # fmt: skip
    consumer.highwater = lambda tp: 1000

    async def add_gap(tp: Any, start: int, end: int) -> None:
        consumer.gaps.append((tp.partition, start, end))

    consumer._add_gap = add_gap
    return consumer


def _fetched(topic: str, p: int, *offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(topic, p, o, 5_000 + o, 0, b"c", f"v{o}".encode(), None, 1, 2, [])
        for o in offsets
    ]


async def test_a_fetch_goes_to_the_buffers_a_partition_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _App()
    buffer = _buffer(app)
    consumer = _lean(app, {"t": buffer})
    t0, t1, cl = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("changelog", 0)
    fetch = {
        t0: _fetched("t", 0, 3, 4, 5),
        cl: _fetched("changelog", 0, 9),
        t1: _fetched("t", 1, 0),
    }

    async def upstream(self: Any, timeout: float) -> Any:  # noqa: ASYNC109 - Faust's
        return fetch, None

    monkeypatch.setattr(faust_aiokafka.Consumer, "_wait_next_records", upstream)
    rest, active = await consumer._wait_next_records(1.0)
    assert rest == {cl: fetch[cl]} and active is None  # Faust's own path takes the changelog
    assert buffer.size == 4 and buffer.pending() == {0, 1}
    assert buffer.queue[0] == (1, 0, [Record(0, o, f"v{o}".encode(), 5_000 + o, b"c")
                                      for o in (3, 4, 5)])  # fmt: skip
    assert consumer._read_offset[t0] == 5 and consumer._read_offset[t1] == 0
    assert consumer.gaps == []
    assert app.monitor.end_offsets == {t0: 1000, t1: 1000}  # type: ignore[attr-defined]


async def test_read_offsets_and_gaps_as_the_drain_loop_keeps_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Below the read offset: dropped (a record at it is kept, as upstream does); a jump past
    it or within the list: a gap for Faust's commit; inactive partitions and an older
    generation: nothing."""
    app = _App()
    buffer = _buffer(app)
    consumer = _lean(app, {"t": buffer})
    tp = TopicPartition("t", 0)
    consumer._read_offset[tp] = 5
    fetch: dict[Any, Any] = {tp: _fetched("t", 0, 3, 4, 5, 6, 9, 10, 14)}

    async def upstream(self: Any, timeout: float) -> Any:  # noqa: ASYNC109 - Faust's
        return fetch, {TP("t", 0)}

    monkeypatch.setattr(faust_aiokafka.Consumer, "_wait_next_records", upstream)
    await consumer._wait_next_records(1.0)
    assert [r.offset for r in buffer.queue[0][2]] == [5, 6, 9, 10, 14]
    assert consumer.gaps == [(0, 7, 9), (0, 11, 14)]
    assert consumer._read_offset[tp] == 14
    fetch = {tp: _fetched("t", 0, 20)}  # a jump from the read offset itself
    await consumer._wait_next_records(1.0)
    assert consumer.gaps[-1] == (0, 15, 20) and buffer.size == 6
    fetch = {TopicPartition("t", 1): _fetched("t", 1, 0, 1)}  # not an active partition
    await consumer._wait_next_records(1.0)
    assert buffer.size == 6 and buffer.pending() == {0}
    app.topics.acking_topics = set()  # no acks: no gaps either
    fetch = {tp: _fetched("t", 0, 30)}
    await consumer._wait_next_records(1.0)
    assert len(consumer.gaps) == 3 and buffer.size == 7
    consumer.flow_active = False  # getmany seeks back: the fetch is left to it
    fetch = {tp: _fetched("t", 0, 31)}
    rest, _ = await consumer._wait_next_records(1.0)
    assert rest is fetch and buffer.size == 7


async def test_track_and_ack_keep_faust_s_books(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``Consumer.ack`` does per record, per list: the acked offsets Faust's commit reads
    (not below the committed offset, each once), the unacked set's entry, Monitor counts."""
    app = _App()
    consumer = _lean(app, {})
    batch = [_rec(0, 4), _rec(1, 7), _rec(0, 5), _rec(0, 6), _rec(1, 8)]
    consumer._committed_offset[TP("t", 0)] = 5
    consumer._acked_index[TP("t", 1)].add(7)
    tracker = consumer.track_batch("t", batch)
    assert consumer._unacked_messages == {tracker} and not tracker.acked
    assert app.monitor.messages_received_total == 5  # type: ignore[attr-defined]
    assert app.monitor.messages_received_by_topic["t"] == 5  # type: ignore[attr-defined]
    assert app.monitor.tp_read_offsets == {TP("t", 0): 6, TP("t", 1): 8}  # type: ignore[attr-defined]
    monkeypatch.setattr("streams.delivery.notify", lambda fut: None)
    consumer.ack_batch("t", batch, tracker)
    assert tracker.acked and consumer._unacked_messages == set()
    assert consumer._acked[TP("t", 0)] == [5, 6] and consumer._acked[TP("t", 1)] == [8]
    assert consumer._n_acked == 3
    consumer.ack_batch("t", batch, tracker)  # once only
    assert consumer._n_acked == 3


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.warnings.append(msg % args)

    def exception(self, msg: str, *args: Any) -> None:
        raise AssertionError(msg % args)


class _Guarded:
    """What :meth:`LeanConsumer.unfolded` and ``redeliver_lost`` read of Faust's consumer,
    around a real aiokafka ``SubscriptionState`` (attribute names checked against it)."""

    unfolded = LeanConsumer.unfolded
    redeliver_lost = LeanConsumer.redeliver_lost

    def __init__(self, partitions: int, log_start: int = 0) -> None:
        from aiokafka.consumer.subscription_state import SubscriptionState

        self.tps = [TopicPartition("t", p) for p in range(partitions)]
        state = SubscriptionState()
        state.subscribe(topics={"t", "other"})
        state.assign_from_subscribed(set(self.tps) | {TopicPartition("other", 0)})
        self.assignment = state.subscription.assignment
        fetcher = type("Fetcher", (), {"_records": {}})()
        aio = type("Aio", (), {"_subscription": state, "_fetcher": fetcher})()
        self._thread = type("Thread", (), {"_consumer": aio, "seek_wait": self._seek_wait})()
        self.app = _App()
        self.app.conf = type("Conf", (), {"consumer_auto_offset_reset": "earliest"})()
        self.app.rebalancing = self.app.in_recovery = False
        self.flow_active = True
        self._suspects: dict[Any, Any] = {}
        self._watching = True
        self.log = _Log()
        self.log_start = log_start
        self.seeks: list[tuple[int, int]] = []

    def position(self, p: int, offset: int) -> None:
        self.assignment.state_value(self.tps[p]).seek(offset)

    async def earliest_offsets(self, *tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, self.log_start)

    async def _seek_wait(self, partitions: dict[Any, int]) -> None:
        for tp, offset in partitions.items():
            self.seeks.append((tp.partition, offset))
            self.position(tp.partition, offset)


async def test_unfolded_compares_aiokafka_position_with_the_agents_seal() -> None:
    consumer = _Guarded(partitions=5)
    buffer = BatchBuffer(consumer.app, high_water=100)  # type: ignore[arg-type]
    seals = {0: [9], 1: [9], 2: [9], 3: None}
    buffer.done = seals.get
    for p, position in enumerate((10, 14, 14, 3)):  # partition 4: no position yet
        consumer.position(p, position)
    assert consumer.unfolded({"t": buffer}) == {
        TopicPartition("t", 1): (10, 14),  # 10..13 taken, never folded
        TopicPartition("t", 2): (10, 14),
        TopicPartition("t", 3): (-1, 3),  # nothing folded: from the log start
    }
    _put(buffer, _rec(1, 10))  # waiting in the buffer: not lost
    consumer._thread._consumer._fetcher._records[consumer.tps[2]] = object()  # fetched
    assert consumer.unfolded({"t": buffer}) == {TopicPartition("t", 3): (-1, 3)}
    assert consumer.unfolded({"t": BatchBuffer(consumer.app, 100)}) == {}  # type: ignore[arg-type]
    consumer.app.conf.consumer_auto_offset_reset = "latest"
    assert TopicPartition("t", 3) not in consumer.unfolded({"t": buffer})


async def test_redeliver_lost_seeks_back_after_two_checks_that_agree() -> None:
    consumer = _Guarded(partitions=3, log_start=2)
    buffer = BatchBuffer(consumer.app, high_water=100)  # type: ignore[arg-type]
    seals: dict[int, Any] = {0: [9], 1: [9], 2: None}
    buffer.done = seals.get
    consumer.position(0, 10)
    consumer.position(1, 14)
    consumer.position(2, 2)  # nothing folded, but the log starts at 2: nothing lost
    await consumer.redeliver_lost({"t": buffer})
    assert consumer.seeks == []  # seen once: maybe on its way to the agent
    await consumer.redeliver_lost({"t": buffer})
    assert consumer.seeks == [(1, 10)]
    assert consumer.log.warnings == [
        "t[1]: offsets 10..13 were consumed but never folded; reading them again"
    ]
    seals[0] = [11]
    consumer.position(0, 12)
    await consumer.redeliver_lost({"t": buffer})
    await consumer.redeliver_lost({"t": buffer})
    assert consumer.seeks == [(1, 10)]  # folded as taken: nothing to do
    consumer.position(1, 14)  # taken again, still not folded
    consumer.app.rebalancing = True
    await consumer.redeliver_lost({"t": buffer})
    consumer.app.rebalancing = False
    await consumer.redeliver_lost({"t": buffer})
    assert consumer.seeks == [(1, 10)]  # a rebalance in between starts the count anew
    await consumer.redeliver_lost({"t": buffer})
    assert consumer.seeks == [(1, 10), (1, 10)]


def test_fetch_wait_override_still_reaches_the_fetcher() -> None:
    """LeanConsumerThread sets ``_fetch_max_wait_ms`` on the consumer Faust builds (which
    hard-codes 1500); aiokafka must still read it when it starts its fetcher."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    worker = inspect.getsource(AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500," in worker and "return aiokafka.AIOKafkaConsumer(" in worker
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms," in inspect.getsource(AIOKafkaConsumer.start)


def test_batch_delivery_is_on_by_default_and_can_be_turned_off() -> None:
    from streams.settings import Settings, from_env

    assert Settings().batch_delivery is True
    assert from_env({}).batch_delivery is True
    assert from_env({"CX_BATCH_DELIVERY": "0"}).batch_delivery is False
    assert from_env({"CX_BATCH_DELIVERY": "1"}).batch_delivery is True
    assert from_env({"CX_BATCH_DELIVERY": "off"}).batch_delivery is False
    with pytest.raises(ValueError):
        from_env({"CX_BATCH_DELIVERY": "maybe"})
