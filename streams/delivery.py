"""Batch delivery: input records reach our agents as lists, without per-record asyncio tasks.

Why: stock faust-streaming 0.15.3 hands every record to the agents one at a time.
``Consumer._drain_messages`` awaits ``wait_first(callback(message), suspend_flow.wait())`` per
record (4 tasks and an ``asyncio.wait``), the conductor's ``on_message`` decodes it into an
``Event`` and puts it on the agent's queue, the stream takes it off again, runs
``take_events``' processor, and finally acks it per event. A Faust agent that did nothing got
~6k records/s that way; our agents fold batches anyway.

What replaces what (faust-streaming 0.15.3; ``tests/unit/test_delivery.py`` fails if any of
these change upstream, versions pinned in ``pyproject.toml``):

- ``LeanConsumer._drain_messages`` is ``Consumer._drain_messages`` (faust/transport/consumer.py)
  with one line changed: a record of a topic that has a :class:`BatchBuffer` is appended to it
  instead of ``wait_first(callback(message), ...)``. Fetching (``getmany``: flow, generation
  and paused-partition checks), read offsets, gaps and ``commit_every`` are unchanged; so is the
  path of every other topic (changelogs, leader topic).
- The conductor's ``on_message`` (``ConductorCompiler.build``) for those records: it waited for
  flow control (kept: the drain waits for it like the conductor, and drops the record when the
  consumer's flow is stopped meanwhile, as the cancelled ``wait_first`` did) and for the
  producer buffer to ebb (our writers do not use Faust's producer buffer: streams/tables.py).
  Back-pressure is the same: a full buffer takes its partitions out of the fetch
  (``Consumer.on_buffer_full`` / ``on_buffer_drop``, as the agent queue did).
- ``Stream._py_aiter`` + ``Stream.take_events`` for those records: :meth:`BatchBuffer.batches`
  skips records of an older consumer generation (as the stream does), tracks the records it
  hands over as unacked (``Consumer.track_message``, so rebalances and shutdown wait for them,
  ``Consumer.wait_empty``) and acks them (``Consumer.ack``, which is what Faust's commit
  reads) only when the agent asks for the next batch, i.e. after the batch was folded and
  ``table.changelog_sent()`` returned. Unlike ``take_events`` it does not ack a batch whose
  body raised: those records are then never committed in this process (the gaps guard,
  streams/agents/gaps.py, reads them back if later records of the partition arrive).
- Revocation clears the buffers: they are registered with ``app.flow_control`` like the agent
  queues (``FlowControlEvent.manage_queue``).
- Added: :meth:`LeanConsumer.redeliver_lost` reads again records the aiokafka consumer took
  but that their agent never folded (docs/crash-safety.md, "Batch delivery").

Installed by :func:`install` from ``create_app`` for ``kafka://`` brokers. Agents read through
:func:`batches`, which falls back to ``take_events`` when the stream is not fed by our consumer
(``agent.test_context()``, other transports).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, Message

from streams.delivery_drain import drain_messages

#: An agent's progress: partition -> ``[last offset done, ...]``, or None when nothing is done
#: (stage 1's ``{p}|p`` seal, stage 2's applied partials offset).
Done = Callable[[int], Any]


class BatchBuffer:
    """The records of one topic waiting for its agent (that agent has concurrency 1)."""

    def __init__(self, app: AppT, high_water: int, done: Done | None = None) -> None:
        self.app = app
        self.high_water = high_water
        self.done = done  # the agent's progress, for LeanConsumer.redeliver_lost
        self.queue: deque[Message] = deque()
        self.out: frozenset[int] = frozenset()  # partitions of the list handed out, until acked
        self.handed: list[Message] = []  # that list
        self.throttled: set[TP] = set()  # partitions taken out of the fetch
        self.want = 1  # records the waiting agent wants before its `within` is up
        self.arrived = asyncio.Event()
        app.flow_control.manage_queue(cast(Any, self))  # cleared on revocation

    def put(self, tp: TP, message: Message) -> None:
        queue = self.queue
        queue.append(message)
        if len(queue) >= self.want:
            self.arrived.set()
        if len(queue) >= self.high_water and tp not in self.throttled:
            # The drain's tp is aiokafka's TopicPartition (the keys of its fetch result);
            # Faust's active-partition set must hold Faust's TP: on_buffer_drop adds it back
            # and _get_active_partitions asserts the type (a 1M-event replay crashed there).
            tp = TP(tp.topic, tp.partition)
            self.throttled.add(tp)
            self.app.consumer.on_buffer_full(tp)

    def pending(self) -> set[int]:
        """Partitions with records waiting here or handed to the agent and not acked yet."""
        return {m.partition for m in self.queue} | self.out

    def clear(self) -> None:
        self.queue.clear()
        self._release()

    def _release(self) -> None:
        if self.throttled and len(self.queue) <= self.high_water // 2:
            for tp in self.throttled:
                self.app.consumer.on_buffer_drop(tp)
            self.throttled.clear()

    async def batches(self, max_: int, within: float) -> AsyncIterator[list[Message]]:
        """Lists of at most ``max_`` records: as soon as ``max_`` are there, else ``within``
        seconds after the previous list (at once when that is past). Each list is acked
        when the next one is asked for."""
        app, consumer, loop = self.app, self.app.consumer, asyncio.get_running_loop()
        acking = app.topics.acking_topics
        last = 0.0
        while True:
            await app.flow_control.acquire()
            self.want = max_
            while len(self.queue) < max_:
                remaining = last + within - loop.time()
                if remaining <= 0 and self.queue:
                    break
                self.arrived.clear()
                if not self.queue:
                    self.want = 1
                    await self.arrived.wait()
                    self.want = max_
                    continue
                try:
                    async with asyncio.timeout(remaining):
                        await self.arrived.wait()
                except TimeoutError:
                    break
            generation = app.consumer_generation_id
            queue, batch = self.queue, []
            for _ in range(min(max_, len(queue))):
                message = queue.popleft()
                if message.generation_id != generation or not app.flow_control.is_active():
                    continue  # fetched before a rebalance: Stream._py_aiter skips it too
                if message.topic in acking and not message.tracked:
                    message.tracked = True
                    consumer.track_message(message)
                batch.append(message)
            self._release()
            last = loop.time()
            if not batch:
                continue
            self.out = frozenset(m.partition for m in batch)
            self.handed = batch
            try:
                yield batch
                for message in batch:
                    consumer.ack(message)
            finally:
                # Not when a newer list is out: the generator of an agent that crashed is
                # closed late (when its frames are freed), after its restarted agent's own took
                # over this buffer.
                if self.handed is batch:
                    self.out, self.handed = frozenset(), []

    def abandon(self) -> int:
        """Forget the list handed out without acking it: its agent crashed on it.

        The records stay unacked (no commit covers them; they are read again, as new messages,
        by :meth:`LeanConsumer.redeliver_lost` or the gap check), but Faust no longer waits for
        them: they were tracked (``Consumer.track_message``) and only an ack untracks them, so
        a worker stopping after a crash waited for them in ``Consumer.wait_empty`` forever
        (the crash keeps them alive: its traceback holds the batch). Returns how many."""
        unacked = cast(Any, self.app.consumer)._unacked_messages  # what track_message adds to
        dropped = [m for m in self.handed if not m.acked]
        for message in dropped:
            unacked.discard(message)
        self.out, self.handed = frozenset(), []
        return len(dropped)


def abandon(app: AppT, topics: Iterable[str]) -> int:
    """:meth:`BatchBuffer.abandon` for the buffers of ``topics`` (an agent's), if any."""
    transport = app.transport
    if not isinstance(transport, LeanTransport):
        return 0  # Faust's own path: take_events' events
    buffers = [transport.buffers.get(name) for name in topics]
    return sum(b.abandon() for b in buffers if b is not None)


# Faust hard-codes fetch_max_wait_ms=1500 (AIOKafkaConsumerThread._create_worker_consumer), and
# Tansu answers a waiting fetch only every ~fetch_max_wait_ms / 2 even when data arrived
# meanwhile: ~0.75 s per hop, two hops (input, partials) per score. Idle cost of 100 ms: ~20
# fetch requests/s. AIOKafkaConsumer.start() hands _fetch_max_wait_ms to its Fetcher.
FETCH_MAX_WAIT_MS = 100


class LeanConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class LeanConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the drain loop of :mod:`streams.delivery_drain` and a
    shorter fetch wait (:data:`FETCH_MAX_WAIT_MS`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._suspects: dict[TP, tuple[int, int]] = {}
        self._watching = True  # False once aiokafka's internals were not what we read

    def unfolded(self, buffers: Mapping[str, BatchBuffer]) -> dict[TP, tuple[int, int]]:
        """Partitions whose records the aiokafka consumer took past what their agent folded,
        with none of them fetched, waiting in a buffer or being folded:
        ``{tp: (next offset to fold, aiokafka position)}``, -1 for "the log start" (nothing
        folded yet; the consumer starts there, ``consumer_auto_offset_reset="earliest"``).

        The agent's own seal (``BatchBuffer.done``) is the measure, not Faust's read offset:
        records can be lost after that offset moved (the drain, ``getmany`` and
        :meth:`BatchBuffer.batches` each drop records while the flow is stopped or after a
        rebalance, and Faust's seek back to the committed offset does not always follow)."""
        aio: Any = getattr(self._thread, "_consumer", None)
        subscription = aio._subscription.subscription if aio is not None else None
        assignment = subscription.assignment if subscription is not None else None
        if assignment is None:
            return {}
        fetched = aio._fetcher._records  # fetched, not yet handed to Faust's getmany
        watched = {t: (b.done, b.pending()) for t, b in buffers.items() if b.done is not None}
        from_start = self.app.conf.consumer_auto_offset_reset == "earliest"
        out: dict[TP, tuple[int, int]] = {}
        for tp in list(assignment.tps):
            watch = watched.get(tp.topic)
            if watch is None or tp in fetched or tp.partition in watch[1]:
                continue
            state = assignment.state_value(tp)
            if state is None or not state.has_valid_position:
                continue
            seal = watch[0](tp.partition)
            if seal is None and not from_start:
                continue  # started at the log end: nothing to compare with
            expected = seal[0] + 1 if seal else -1
            if state.position > max(expected, 0):
                out[tp] = (expected, state.position)
        return out

    async def redeliver_lost(self, buffers: Mapping[str, BatchBuffer]) -> None:
        """Read again the records of a partition that the consumer took but its agent never
        folded, when two checks in a row (an interval apart) saw the same range.

        Seen with batch delivery, 1 in ~10 runs of tests/integration/test_shutdown.py with CPU
        load beside it, and once in a CI run of tests/integration/test_redeliver.py: aiokafka's
        position at the end of the log, the agent's seal behind it, no error. Where exactly
        Faust 0.15 drops the records is not known: its ``getmany`` breaks off or skips records
        silently in several places, and the drain and :meth:`BatchBuffer.batches` drop records
        while the flow is stopped, expecting the seek back to the committed offset that a
        rebalance ends with. New records of the partition would heal it (the gap check,
        streams/agents/gaps.py, reads the hole back), but an idle partition stays behind for
        good. Reading a range twice is harmless: both stages skip offsets they sealed."""
        app = self.app
        if not self._watching:
            return
        if (
            not (self.flow_active and app.flow_control.is_active())
            or app.rebalancing
            or app.in_recovery
        ):
            self._suspects.clear()
            return
        try:
            now = self.unfolded(buffers)
        except (RuntimeError, KeyError):  # the consumer thread changed it meanwhile
            return
        except AttributeError:  # an aiokafka upgrade (pinned in pyproject.toml)
            self.log.exception("redelivery check off: aiokafka's consumer state is not as read")
            self._watching = False
            return
        previous, self._suspects = self._suspects, {}
        for tp, (expected, position) in now.items():
            if previous.get(tp) != (expected, position):
                self._suspects[tp] = (expected, position)
                continue
            try:
                start = (await self.earliest_offsets(tp))[tp]  # below it: deleted (retention)
                expected = max(expected, start)
                if position <= expected:
                    continue
                self.log.warning(
                    "%s[%d]: offsets %d..%d were consumed but never folded; reading them "
                    "again", tp.topic, tp.partition, expected, position - 1,
                )  # fmt: skip
                await cast(Any, self._thread).seek_wait({tp: expected})
            except Exception as exc:  # noqa: BLE001 - a rebalance or a slow broker: next round
                self.log.warning("%s[%d]: reading again failed: %r", tp.topic, tp.partition, exc)

    def _new_consumer_thread(self) -> LeanConsumerThread:
        return LeanConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - via a worker
        transport = cast(LeanTransport, self.transport)
        if not transport.batch:
            await super()._drain_messages(fetcher)  # Faust's own per-record path
            return
        await drain_messages(self, fetcher, transport.buffers)


class LeanTransport(faust_aiokafka.Transport):
    Consumer = LeanConsumer

    batch = False  # batch delivery on (CX_BATCH_DELIVERY); off: Faust's per-record path

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffers: dict[str, BatchBuffer] = {}


#: How often :meth:`LeanConsumer.redeliver_lost` looks; a range is read again after two looks.
REDELIVER_CHECK_S = 2.0


def install(app: faust.App, batch: bool = True) -> None:
    """Use :class:`LeanTransport` (the shorter fetch wait) when the app would use Faust's
    aiokafka transport, with batch delivery when ``batch`` (``CX_BATCH_DELIVERY``, on by
    default; off: Faust's per-record path, about half the throughput)."""
    if type(app.transport) is faust_aiokafka.Transport:
        transport = LeanTransport(app.conf.broker_consumer, app)
        transport.batch = batch
        app.transport = transport
        if batch:

            @app.timer(REDELIVER_CHECK_S, name="redeliver-lost")
            async def redeliver_lost() -> None:
                consumer = app.consumer
                if isinstance(consumer, LeanConsumer):
                    await consumer.redeliver_lost(transport.buffers)


async def batches(
    stream: faust.StreamT, max_: int, within: float, done: Done | None = None
) -> AsyncIterator[list[Any]]:
    """The agent's records in lists (``Message``: topic, partition, offset, key, value,
    timestamp in seconds), acked when the next list is asked for. ``done``: the agent's
    progress per partition, which lets :meth:`LeanConsumer.redeliver_lost` find records taken
    from the broker but never folded."""
    app, channel = stream.app, stream.channel
    transport = app.transport
    if (
        isinstance(transport, LeanTransport)
        and transport.batch
        and isinstance(channel, faust.types.TopicT)
    ):
        aiter(channel)  # subscribes the topic (Topic.__aiter__ adds it to the conductor)
        names = list(channel.topics)
        if len(names) != 1:
            raise ValueError(f"one topic per batch agent, not {names}")
        high_water = max(2 * max_, app.conf.stream_buffer_maxsize)
        buffer = transport.buffers.get(names[0])
        if buffer is None:  # an agent restarted after a crash keeps its topic's buffer
            buffer = transport.buffers[names[0]] = BatchBuffer(app, high_water)
        buffer.done = done
        async for batch in buffer.batches(max_, within):
            yield batch
        return
    async for events in cast(Any, stream).take_events(max_, within=within):
        yield [e.message for e in events]
