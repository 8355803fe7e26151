"""Fault injection for tests/integration/test_redeliver.py, loaded by a worker started with
this directory on PYTHONPATH: the first fetch that returns records of ``CX_TEST_LOSE_FETCH``
loses them between aiokafka and Faust (aiokafka's position has moved past them), which is
what a stalled batch-delivery worker looked like."""

from __future__ import annotations

import os
import sys
from typing import Any

_TOPIC = os.environ.get("CX_TEST_LOSE_FETCH")

if _TOPIC:
    from faust.transport.drivers import aiokafka as _driver

    _fetch_records = _driver.AIOKafkaConsumerThread._fetch_records
    _done: list[int] = []

    async def _lossy(self: Any, *args: Any, **kwargs: Any) -> Any:
        records = await _fetch_records(self, *args, **kwargs)
        if not _done:
            hit = [tp for tp in records if tp.topic == _TOPIC]
            if hit:
                lost = {f"{tp.partition}": len(records.pop(tp)) for tp in hit}
                _done.append(sum(lost.values()))
                print(f"TEST FAULT: lost {lost} records of {_TOPIC}", file=sys.stderr, flush=True)
        return records

    _driver.AIOKafkaConsumerThread._fetch_records = _lossy  # type: ignore[method-assign]
