"""Batch delivery (streams/delivery.py): still matches the Faust code it replaces, and hands
over, throttles, skips and acks records like the stock path."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.streams import Stream
from faust.transport.conductor import ConductorCompiler
from faust.transport.consumer import Consumer
from faust.types import TP
from mode.utils.queues import FlowControlEvent

from streams import delivery_drain
from streams.delivery import BatchBuffer, LeanConsumer

# sha256 (first 16 hex digits) of the upstream source (faust-streaming 0.15.3, mode 0.4).
# If one changes: read the upstream change, port it to streams/delivery*.py, update the hash.
REPLACED: dict[Callable[..., Any], str] = {
    Consumer._drain_messages: "44a2500309e83c63",  # copied in delivery_drain.py
    ConductorCompiler.build: "837cf521368c1ee4",  # on_message: flow control, back-pressure
    Stream._py_aiter: "3a48ee257a65435b",  # generation skip, track_message
    Stream.take_events: "607d48aead118ba8",  # batching, acks
    # relied on as they are:
    Consumer.getmany: "4b168d84882a70d6",
    Consumer.track_message: "217d7f1399a4cd8e",
    Consumer.ack: "5fcf41cf45153475",
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


def _body_lines(source: str) -> list[str]:
    """Code lines after the signature, dedented, without comments and blank lines."""
    body = textwrap.dedent(source.split(") -> None:", 1)[1].split("\n", 1)[1])
    out = []
    for line in body.splitlines():
        code = re.sub(r"\s*#.*$", "", line).rstrip()
        if code.strip() and not code.strip().startswith("#"):
            out.append(code)
    return out


def test_drain_copy_differs_from_upstream_only_where_marked() -> None:
    upstream = _body_lines(inspect.getsource(Consumer._drain_messages))
    ours = _body_lines(inspect.getsource(delivery_drain.drain_messages))
    setup = ["flow_control = self.app.flow_control", "flow_active = flow_control.is_active",
             "get_buffer = buffers.get"]  # fmt: skip
    ours = [line for line in ours if line.strip() not in setup]
    start = next(i for i, line in enumerate(ours) if "get_buffer(tp.topic)" in line)
    end = next(i for i, line in enumerate(ours) if "buffer.put(tp, message)" in line)
    replaced = next(i for i, line in enumerate(upstream) if "await self.wait_first(" in line)
    assert ours[:start] == upstream[:replaced]
    assert ours[end + 1 :] == upstream[replaced + 3 :]  # the call spans three lines upstream
    assert [line.strip() for line in upstream[replaced : replaced + 3]] == [
        "await self.wait_first(",
        "callback(message), self.suspend_flow.wait()",
        ")",
    ]


class _Message:
    def __init__(self, partition: int, offset: int, generation: int = 1) -> None:
        self.topic, self.partition, self.offset = "t", partition, offset
        self.tp = TP("t", partition)
        self.generation_id = generation
        self.tracked = self.acked = False


class _Consumer:
    def __init__(self) -> None:
        self.tracked: list[int] = []
        self.acked: list[int] = []
        self.full: list[TP] = []
        self.dropped: list[TP] = []
        self._unacked_messages: set[Any] = set()  # Faust's: a WeakSet

    def track_message(self, m: Any) -> None:
        self.tracked.append(m.offset)
        self._unacked_messages.add(m)

    def ack(self, m: Any) -> bool:
        self.acked.append(m.offset)
        self._unacked_messages.discard(m)
        m.acked = True
        return True

    def on_buffer_full(self, tp: TP) -> None:
        assert type(tp) is TP  # Faust's Consumer._get_active_partitions asserts it
        self.full.append(tp)

    def on_buffer_drop(self, tp: TP) -> None:
        assert type(tp) is TP
        self.dropped.append(tp)


class _Topics:
    acking_topics = {"t"}


class _App:
    def __init__(self) -> None:
        self.consumer = _Consumer()
        self.topics = _Topics()
        self.flow_control = FlowControlEvent()  # starts suspended, like the app's
        self.flow_control.resume()  # done by the app once started
        self.consumer_generation_id = 1


def _put(buffer: BatchBuffer, *messages: _Message) -> None:
    for m in messages:
        # the drain hands over aiokafka's TopicPartition (the keys of its fetch result)
        buffer.put(TopicPartition(m.topic, m.partition), m)  # type: ignore[arg-type]


async def test_batches_are_acked_only_when_the_next_is_asked_for() -> None:
    app = _App()
    buffer = BatchBuffer(app, high_water=100)  # type: ignore[arg-type]
    _put(buffer, *(_Message(0, o) for o in range(5)))
    it = buffer.batches(3, within=1.0)
    first = await it.__anext__()  # full: no waiting for `within`
    assert [m.offset for m in first] == [0, 1, 2]
    assert app.consumer.tracked == [0, 1, 2] and app.consumer.acked == []
    second = await asyncio.wait_for(it.__anext__(), 5.0)  # the rest, after `within`
    assert [m.offset for m in second] == [3, 4]
    assert app.consumer.acked == [0, 1, 2]  # the first batch, now that it was folded
    await it.aclose()  # the agent stopped or crashed while folding the second batch
    assert app.consumer.acked == [0, 1, 2]


async def test_the_batch_of_a_crashed_agent_is_untracked_not_acked() -> None:
    """``BatchBuffer.abandon`` (streams/supervision.py calls it when an agent crashed): Faust
    stops waiting for the batch (``Consumer.wait_empty`` waited for it forever when the worker
    stopped after a crash) and nothing acks it (no commit covers it, it is read again). The
    crashed agent's generator, closed late, leaves its restarted agent's batch alone."""
    app = _App()
    buffer = BatchBuffer(app, high_water=100)  # type: ignore[arg-type]
    _put(buffer, *(_Message(0, o) for o in range(6)))
    crashed = buffer.batches(3, within=0.05)
    assert [m.offset for m in await crashed.__anext__()] == [0, 1, 2]
    assert {m.offset for m in app.consumer._unacked_messages} == {0, 1, 2}
    assert buffer.abandon() == 3  # the agent raised while folding it
    assert app.consumer._unacked_messages == set() and app.consumer.acked == []
    assert buffer.pending() == {0}  # offsets 3..5 still wait here
    restarted = buffer.batches(3, within=0.05)
    second = await restarted.__anext__()
    assert [m.offset for m in second] == [3, 4, 5] and buffer.handed is second
    await crashed.aclose()  # the crashed agent's generator, finalized only now
    assert buffer.handed is second and buffer.out == {0}
    assert buffer.abandon() == 3 and app.consumer.acked == []
    await restarted.aclose()


async def test_a_partial_batch_waits_for_within_then_goes() -> None:
    app = _App()
    buffer = BatchBuffer(app, high_water=100)  # type: ignore[arg-type]
    it = buffer.batches(10, within=0.2)
    _put(buffer, _Message(0, 0))
    t0 = asyncio.get_running_loop().time()
    assert [m.offset for m in await it.__anext__()] == [0]  # idle before: at once
    _put(buffer, _Message(0, 1))
    assert [m.offset for m in await it.__anext__()] == [1]
    assert asyncio.get_running_loop().time() - t0 >= 0.19  # within after the previous batch
    await it.aclose()


async def test_records_of_an_older_generation_are_skipped_not_tracked() -> None:
    app = _App()
    buffer = BatchBuffer(app, high_water=100)  # type: ignore[arg-type]
    _put(buffer, _Message(0, 7, generation=1), _Message(0, 8, generation=2))
    app.consumer_generation_id = 2  # a rebalance happened after the fetch of offset 7
    it = buffer.batches(10, within=0.0)
    assert [m.offset for m in await it.__anext__()] == [8]
    assert app.consumer.tracked == [8]
    await it.aclose()


async def test_a_full_buffer_pauses_its_partitions_until_half_empty() -> None:
    app = _App()
    buffer = BatchBuffer(app, high_water=4)  # type: ignore[arg-type]
    _put(buffer, *(_Message(p, o) for o in range(3) for p in (0, 1)))
    assert app.consumer.full == [TP("t", 1), TP("t", 0)]  # the 4th and 5th put
    it = buffer.batches(3, within=0.0)
    await it.__anext__()  # 3 left: above half
    assert app.consumer.dropped == []
    await it.__anext__()  # 0 left
    assert sorted(app.consumer.dropped) == [TP("t", 0), TP("t", 1)]
    await it.aclose()


async def test_revocation_clears_the_buffer() -> None:
    app = _App()
    buffer = BatchBuffer(app, high_water=100)  # type: ignore[arg-type]
    _put(buffer, _Message(0, 1), _Message(0, 2))
    app.flow_control.suspend()
    app.flow_control.clear()  # App._on_partitions_revoked clears the agents' queues
    assert not buffer.queue
    it = buffer.batches(10, within=0.0)
    waiting = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # flow suspended: nothing handed over
    app.flow_control.resume()
    _put(buffer, _Message(0, 3))
    assert [m.offset for m in await asyncio.wait_for(waiting, 1.0)] == [3]
    await it.aclose()


async def test_pending_names_partitions_waiting_or_being_folded() -> None:
    app = _App()
    buffer = BatchBuffer(app, high_water=100)  # type: ignore[arg-type]
    _put(buffer, _Message(0, 1), _Message(1, 1), _Message(2, 1))
    assert buffer.pending() == {0, 1, 2}
    it = buffer.batches(2, within=0.0)
    await it.__anext__()  # partitions 0 and 1 handed out, 2 waits
    assert buffer.pending() == {0, 1, 2}
    await it.__anext__()  # the first list acked
    assert buffer.pending() == {2}
    await it.aclose()  # the agent stopped while folding it: nothing acked, nothing pending
    assert buffer.pending() == set() and app.consumer.acked == [1, 1]


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
    _put(buffer, _Message(1, 10))  # waiting in the buffer: not lost
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
