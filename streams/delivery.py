"""Batch delivery: input records reach our agents as lists, without per-record Faust objects.

Why: stock faust-streaming 0.15.3 hands every record to the agents one at a time.
``Consumer._drain_messages`` awaits ``wait_first(callback(message), suspend_flow.wait())`` per
record (4 tasks and an ``asyncio.wait``), the conductor's ``on_message`` decodes it into an
``Event`` and puts it on the agent's queue, the stream takes it off again, runs
``take_events``' processor, and finally acks it per event. A Faust agent that did nothing got
~6k records/s that way; our agents fold batches anyway.

What replaces what (faust-streaming 0.15.3; ``tests/unit/test_delivery.py`` fails if any of
these change upstream, versions pinned in ``pyproject.toml``):

- :meth:`LeanConsumer._wait_next_records` takes the records of a topic that has a
  :class:`BatchBuffer` out of each fetch result, a partition's list at a time, before
  ``Consumer.getmany`` turns them into ``ConsumerMessage`` objects one by one; the rest
  (changelogs, the leader topic) go on through Faust's own ``getmany`` and drain loop. What
  those two did per record is done once per partition's list: the flow, generation and
  active-partition checks and the end-offset sensor of ``getmany``; the read offsets, gaps,
  ``commit_every`` and the flow-control wait of ``_drain_messages`` (whose wait stood for the
  conductor's ``on_message``). Since 2026-12-07; before, a copy of the drain loop put each
  ``ConsumerMessage`` into the buffer: with its tracking and acks ~6 us per record, against
  ~1 now (docs/performance-history.md, README "Performance").
- The conductor's ``on_message`` (``ConductorCompiler.build``) for those records: it waited for
  flow control (kept, see above: records are dropped when the consumer's flow is stopped
  meanwhile, as the cancelled ``wait_first`` did) and for the producer buffer to ebb (our
  writers do not use Faust's producer buffer: streams/tables.py). Back-pressure is the same: a
  full buffer takes its partitions out of the fetch (``Consumer.on_buffer_full`` /
  ``on_buffer_drop``, as the agent queue did).
- ``Stream._py_aiter`` + ``Stream.take_events`` for those records: :meth:`BatchBuffer.batches`
  skips records of an older consumer generation (as the stream does), tracks each list it
  hands over as unacked (:meth:`LeanConsumer.track_batch`: one entry in Faust's unacked set
  per list, so rebalances and shutdown wait for it, ``Consumer.wait_empty``) and acks its
  records (:meth:`LeanConsumer.ack_batch`: ``Consumer.ack``'s bookkeeping, which is what
  Faust's commit reads, once per partition) only when the agent asks for the next list, i.e.
  after the batch was folded and ``table.changelog_sent()`` returned. Unlike ``take_events``
  it does not ack a batch whose body raised: those records are then never committed in this
  process (the gaps guard, streams/agents/gaps.py, reads them back if later records of the
  partition arrive).
- Revocation clears the buffers: they are registered with ``app.flow_control`` like the agent
  queues (``FlowControlEvent.manage_queue``).
- Added: :meth:`LeanConsumer.redeliver_lost` reads again records the aiokafka consumer took
  but that their agent never folded (docs/crash-safety.md, "Batch delivery").

Agents get :class:`streams.state.Record` tuples. Installed by :func:`install` from
``create_app`` for ``kafka://`` brokers. Agents read through :func:`batches`, which falls back
to ``take_events`` when the stream is not fed by our consumer (``agent.test_context()``, other
transports).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import faust
from faust.sensors.monitor import Monitor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.state import Record

#: An agent's progress: partition -> ``[last offset done, ...]``, or None when nothing is done
#: (stage 1's ``{p}|p`` seal, stage 2's applied partials offset).
Done = Callable[[int], Any]


class Handed:
    """A list of records handed to an agent, in Faust's set of unacked messages until acked:
    ``Consumer.wait_empty`` (rebalance, shutdown) waits while the set holds anything that is
    not ``acked``, and its log reads ``refcount``."""

    __slots__ = ("acked", "refcount", "size", "__weakref__")

    def __init__(self, size: int) -> None:
        self.acked = False
        self.refcount = 1
        self.size = size

    def __repr__(self) -> str:
        return f"<records handed to an agent: {self.size}>"


class BatchBuffer:
    """The records of one topic waiting for its agent (that agent has concurrency 1)."""

    def __init__(
        self, app: AppT, high_water: int, done: Done | None = None, topic: str = ""
    ) -> None:
        self.app = app
        self.topic = topic
        self.high_water = high_water
        self.done = done  # the agent's progress, for LeanConsumer.redeliver_lost
        # (consumer generation, partition, records of that partition in offset order)
        self.queue: deque[tuple[int, int, list[Record]]] = deque()
        self.size = 0  # records in the queue
        self.out: frozenset[int] = frozenset()  # partitions of the list handed out, until acked
        self.handed: list[Record] = []  # that list
        self.tracker: Handed | None = None  # its entry in Faust's unacked set
        self.throttled: set[TP] = set()  # partitions taken out of the fetch
        self.want = 1  # records the waiting agent wants before its `within` is up
        self.arrived = asyncio.Event()
        app.flow_control.manage_queue(cast(Any, self))  # cleared on revocation

    def put(self, tp: TP, records: list[Record], generation: int) -> None:
        """Records of one partition, in offset order, fetched in consumer ``generation``."""
        self.queue.append((generation, tp.partition, records))
        self.size += len(records)
        if self.size >= self.want:
            self.arrived.set()
        if self.size >= self.high_water and tp not in self.throttled:
            # The fetch's tp is aiokafka's TopicPartition (the keys of its fetch result);
            # Faust's active-partition set must hold Faust's TP: on_buffer_drop adds it back
            # and _get_active_partitions asserts the type (a 1M-event replay crashed there).
            tp = TP(tp.topic, tp.partition)
            self.throttled.add(tp)
            self.app.consumer.on_buffer_full(tp)

    def pending(self) -> set[int]:
        """Partitions with records waiting here or handed to the agent and not acked yet."""
        return {p for _g, p, _records in self.queue} | self.out

    def clear(self) -> None:
        self.queue.clear()
        self.size = 0
        self._release()

    def _release(self) -> None:
        if self.throttled and self.size <= self.high_water // 2:
            for tp in self.throttled:
                self.app.consumer.on_buffer_drop(tp)
            self.throttled.clear()

    def _take(self, max_: int) -> list[Record]:
        """Up to ``max_`` records off the queue, without those of an older generation or taken
        while the flow is stopped (``Stream._py_aiter`` skips them too)."""
        app, queue = self.app, self.queue
        generation = app.consumer_generation_id
        batch: list[Record] = []
        while queue and len(batch) < max_:
            gen, p, records = queue[0]
            room = max_ - len(batch)
            if len(records) <= room:
                queue.popleft()
            else:
                queue[0] = (gen, p, records[room:])
                records = records[:room]
            self.size -= len(records)
            if gen == generation and app.flow_control.is_active():
                batch.extend(records)
        return batch

    async def batches(self, max_: int, within: float) -> AsyncIterator[list[Record]]:
        """Lists of at most ``max_`` records: as soon as ``max_`` are there, else ``within``
        seconds after the previous list (at once when that is past). Each list is acked
        when the next one is asked for."""
        app, loop = self.app, asyncio.get_running_loop()
        consumer = cast(LeanConsumer, app.consumer)
        last = 0.0
        while True:
            await app.flow_control.acquire()
            self.want = max_
            while self.size < max_:
                remaining = last + within - loop.time()
                if remaining <= 0 and self.size:
                    break
                self.arrived.clear()
                if not self.size:
                    self.want = 1
                    await self.arrived.wait()
                    self.want = max_
                    continue
                try:
                    async with asyncio.timeout(remaining):
                        await self.arrived.wait()
                except TimeoutError:
                    break
            batch = self._take(max_)
            self._release()
            last = loop.time()
            if not batch:
                continue
            # read per list: the conductor fills acking_topics after the agent subscribed
            acking = self.topic in app.topics.acking_topics
            tracker = consumer.track_batch(self.topic, batch) if acking else None
            self.out = frozenset(r.partition for r in batch)
            self.handed, self.tracker = batch, tracker
            try:
                yield batch
                if tracker is not None:
                    consumer.ack_batch(self.topic, batch, tracker)
            finally:
                # Not when a newer list is out: the generator of an agent that crashed is
                # closed late (when its frames are freed), after its restarted agent's own took
                # over this buffer.
                if self.handed is batch:
                    self.out, self.handed, self.tracker = frozenset(), [], None

    def abandon(self) -> int:
        """Forget the list handed out without acking it: its agent crashed on it.

        The records stay unacked (no commit covers them; they are read again, as new records,
        by :meth:`LeanConsumer.redeliver_lost` or the gap check), but Faust no longer waits for
        them: the list was tracked (:meth:`LeanConsumer.track_batch`) and only its ack untracks
        it, so a worker stopping after a crash waited for it in ``Consumer.wait_empty`` forever
        (the crash keeps it alive: its traceback holds the batch). Returns how many."""
        tracker, dropped = self.tracker, len(self.handed)
        if tracker is not None:
            if tracker.acked:
                dropped = 0
            cast(Any, self.app.consumer)._unacked_messages.discard(tracker)
        self.out, self.handed, self.tracker = frozenset(), [], None
        return dropped


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
    """Faust's aiokafka consumer with batch delivery (:meth:`_wait_next_records`) and a
    shorter fetch wait (:data:`FETCH_MAX_WAIT_MS`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._suspects: dict[TP, tuple[int, int]] = {}
        self._watching = True  # False once aiokafka's internals were not what we read

    async def _wait_next_records(
        self,
        timeout: float,  # noqa: ASYNC109 - Faust's signature
    ) -> tuple[Any, set[TP] | None]:
        """Faust's fetch, minus the records of the topics with a :class:`BatchBuffer`: those
        go to their buffer here, a partition's list at a time (the module doc lists what of
        Faust's per-record path this does once per list)."""
        records, active = await super()._wait_next_records(timeout)
        transport = self.transport
        buffers = transport.buffers if isinstance(transport, LeanTransport) else None
        if not records or not buffers or self.should_stop or not self.flow_active:
            return records, active  # getmany seeks back when the flow is not active
        if not any(tp.topic in buffers for tp in records):
            return records, active
        generation = self.app.consumer_generation_id
        rest = {}
        for tp, fetched in records.items():
            buffer = buffers.get(tp.topic)
            if buffer is None:
                rest[tp] = fetched
            elif fetched:
                await self._to_buffer(tp, fetched, active, buffer, generation)
        return rest, active

    async def _to_buffer(
        self, tp: Any, fetched: Sequence[Any], active: set[TP] | None, buffer: BatchBuffer,
        generation: int,
    ) -> None:  # fmt: skip
        app = self.app
        # Consumer.getmany, per record: the flow, the generation, the active partitions
        if not self.flow_active or app.consumer_generation_id != generation:
            return
        if not (active is None or tp in active or tp in self._buffered_partitions):
            return
        app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        # Consumer._drain_messages, per record: records below the read offset are dropped, a
        # jump past it is a gap (acked as such, so commits can pass it), commit_every
        r_offset = self._read_offset[tp]
        if r_offset is not None and fetched[0].offset < r_offset:
            fetched = [r for r in fetched if r.offset >= r_offset]
            if not fetched:
                return
        if app.topics.acks_enabled_for(tp.topic) and (
            (r_offset and fetched[0].offset - r_offset > 1)
            or fetched[-1].offset - fetched[0].offset != len(fetched) - 1
        ):
            prev = r_offset
            for record in fetched:
                if prev and record.offset - prev > 1:
                    await self._add_gap(tp, prev + 1, record.offset)
                prev = record.offset
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()
        self._read_offset[tp] = fetched[-1].offset
        # the conductor's on_message: wait for flow control; dropped if it stopped meanwhile
        flow_control = app.flow_control
        if not flow_control.is_active():
            await self.wait_first(flow_control.acquire(), self.suspend_flow.wait())
        if flow_control.is_active():
            buffer.put(
                tp,
                [Record(r.partition, r.offset, r.value, r.timestamp or 0, r.key) for r in fetched],
                generation,
            )

    def track_batch(self, topic: str, batch: list[Record]) -> Handed:
        """``Consumer.track_message`` for a list of records: one entry in the unacked set,
        and the Monitor's received counts (``Monitor.on_message_in``; other sensors are not
        called for batch-delivered records)."""
        tracker = Handed(len(batch))
        self._unacked_messages.add(cast(Any, tracker))
        monitor = self.app.monitor
        if isinstance(monitor, Monitor):
            n = len(batch)
            monitor.messages_received_total += n
            monitor.messages_active += n
            monitor.messages_received_by_topic[topic] += n
            last = {record.partition: record.offset for record in batch}  # in offset order
            for p, offset in last.items():
                monitor.tp_read_offsets[TP(topic, p)] = offset
        return tracker

    def ack_batch(self, topic: str, batch: list[Record], tracker: Handed) -> None:
        """``Consumer.ack`` for every record of ``batch`` (what Faust's commit reads), and the
        list's entry out of the unacked set."""
        with ack_lock:
            if tracker.acked:
                return
            tracker.acked = True
            self._unacked_messages.discard(cast(Any, tracker))
            try:
                if not self.app.topics.acks_enabled_for(topic):
                    return
                by_partition: dict[int, list[int]] = {}
                for record in batch:
                    offsets = by_partition.get(record.partition)
                    if offsets is None:
                        by_partition[record.partition] = [record.offset]
                    else:
                        offsets.append(record.offset)
                for p, offsets in by_partition.items():
                    tp = TP(topic, p)
                    committed = self._committed_offset[tp]
                    acked_index = self._acked_index[tp]
                    new = [
                        o for o in offsets
                        if (committed is None or o >= committed) and o not in acked_index
                    ]  # fmt: skip
                    if new:
                        acked_index.update(new)
                        self._acked[tp].extend(new)
                        self._n_acked += len(new)
            finally:
                notify(self._waiting_for_ack)

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
) -> AsyncIterator[list[Record]]:
    """The agent's records in lists of :class:`streams.state.Record`, acked when the next list
    is asked for. ``done``: the agent's
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
            buffer = transport.buffers[names[0]] = BatchBuffer(app, high_water, topic=names[0])
        buffer.done = done
        async for batch in buffer.batches(max_, within):
            yield batch
        return
    async for events in cast(Any, stream).take_events(max_, within=within):
        yield [
            Record(m.partition, m.offset, m.value, int((m.timestamp or 0) * 1000), m.key)
            for m in (e.message for e in events)
        ]
