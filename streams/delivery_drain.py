"""faust-streaming 0.15.3 ``Consumer._drain_messages`` with batch delivery (streams/delivery.py).

A copy of the upstream method (faust/transport/consumer.py); the only change is marked
``CHANGED``: records of a topic with a ``BatchBuffer`` are appended to it instead of being
awaited one by one through ``wait_first(callback(message), suspend_flow.wait())``.
``tests/unit/test_delivery.py`` keeps a hash of the upstream source: if an upgrade changes it,
compare and port the change here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from mode import Service

if TYPE_CHECKING:  # pragma: no cover
    from streams.delivery import BatchBuffer, LeanConsumer


async def drain_messages(
    self: LeanConsumer, fetcher: Any, buffers: Mapping[str, BatchBuffer]
) -> None:  # pragma: no cover - runs in a worker (tests/integration)
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    flow_control = self.app.flow_control  # CHANGED: the conductor's flow-control wait, below
    flow_active = flow_control.is_active
    get_buffer = buffers.get

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator, getmany(timeout=1.0))

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None:  # noqa: SIM102 - upstream form
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        # CHANGED (was: await self.wait_first(callback(message),
                        #                                      self.suspend_flow.wait()))
                        buffer = get_buffer(tp.topic)
                        if buffer is None:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            if not flow_active():  # on_message's acquire_flow_control()
                                await self.wait_first(
                                    flow_control.acquire(), self.suspend_flow.wait()
                                )
                            if flow_active():  # else dropped, like the cancelled callback
                                buffer.put(tp, message)
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)
