"""``codecs.compact``: encoded bytes that are kept hold no more memory than their length.

orjson >= 3.12 returns every ``dumps`` result in a buffer of at least 4 KiB (ijl/orjson#483);
the bench's 1M-message workload held ~8 GB before its messages were compacted."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

from streams import codecs
from streams.bench import latency_message
from streams.generate import generate_timed
from streams.simulate import survey_stream

VALUE = {"response_id": "resp-0a1b2c3d-0000042", "customer_id": "cus-000042", "survey": "nps",
         "score": 9, "occurred_at": "2026-12-04T10:00:00Z", "channel": "email"}  # fmt: skip


def _held_per_item(make: Callable[[int], Any], n: int = 2000) -> float:
    """Bytes still allocated per item while ``n`` items made by ``make`` are kept."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make(i) for i in range(n)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return held / n


def test_compact_is_the_same_bytes() -> None:
    raw = orjson.dumps(VALUE)
    out = codecs.compact(raw)
    assert out == raw and type(out) is bytes
    assert codecs.compact(b"") == b""


def test_compact_bytes_hold_about_their_length() -> None:
    length = len(orjson.dumps(VALUE))
    held = _held_per_item(lambda _i: codecs.compact(orjson.dumps(VALUE)))
    assert held < length + 100, held  # the bytes object's header is ~33 B


def test_generated_messages_are_compact() -> None:
    start = int(time.time() * 1000) - 86_400_000
    stream = generate_timed(3, None, start, rate_per_s=5.0)
    # a message is a tuple, its key and its value: ~0.5 KB; ~4.2 KB with orjson's buffer
    assert _held_per_item(lambda _i: next(stream)) < 1000
    assert _held_per_item(lambda i: latency_message(i, "t")) < 1000
    events = survey_stream(1, start, 2000, 3_600_000)
    assert _held_per_item(lambda _i: next(events)) < 1000
