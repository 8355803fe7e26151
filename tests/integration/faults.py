"""Helpers shared by the crash-safety tests (rocksdb, shutdown, fuzz, duplicates, memory)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import codecs
from streams.broker import EmbeddedBroker
from streams.settings import Settings
from tests.integration import harness

# Lines a healthy worker never logs (agent crash, uncaught exception).
_BAD_LOG = re.compile(r"Crashed reason|Traceback|\[CRITICAL\]")


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of its own: the cx.* topic names are fixed by the SPEC."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        yield broker


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, EmbeddedBroker]]:
    with (
        EmbeddedBroker(log_path=tmp_path / "a.log") as a,
        EmbeddedBroker(log_path=tmp_path / "b.log") as b,
    ):
        yield a, b


def spawn(settings: Settings, workdir: Path, name: str, **env: str) -> harness.Worker:
    """``harness.Worker`` with extra ``CX_*`` variables (e.g. ``CX_STORE``); the same ``name``
    reuses the data dir (and appends to the log)."""
    with mock.patch.dict(os.environ, env):
        return harness.Worker(settings, workdir, name)


def log_problems(worker: harness.Worker) -> list[str]:
    text = worker.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if _BAD_LOG.search(line)]


def wait_up(worker: harness.Worker, timeout: float = 60) -> None:
    harness.wait_until(
        lambda: worker.samples() is not None, timeout, "worker /metrics", worker.log_tail
    )


def caught_up(broker: EmbeddedBroker, settings: Settings, ends: dict[tuple[str, int], int]) -> bool:
    return harness.caught_up(broker.bootstrap, settings.app_id, ends, f"{settings.app_id}-partials")


def lag(broker: EmbeddedBroker, settings: Settings, ends: dict[tuple[str, int], int]) -> str:
    """Partitions whose committed offset is short of the end (inputs and partials)."""
    partials = f"{settings.app_id}-partials"
    all_ends = {**ends, **asyncio.run(harness.message_counts(broker.bootstrap, partials))}
    got = asyncio.run(harness.committed(broker.bootstrap, settings.app_id, all_ends))
    return ", ".join(f"{t}[{p}] {got.get((t, p))}/{end}" for (t, p), end in sorted(all_ends.items())
                     if got.get((t, p), 0) < end)  # fmt: skip


def wait_caught_up(broker: EmbeddedBroker, settings: Settings, ends: dict[tuple[str, int], int],
                   worker: harness.Worker, what: str, timeout: float = 120) -> None:  # fmt: skip
    harness.wait_until(lambda: caught_up(broker, settings, ends), timeout, what,
                       lambda: f"lagging: {lag(broker, settings, ends)}\n{worker.log_tail()}")  # fmt: skip


def sealed(broker: EmbeddedBroker, settings: Settings) -> dict[tuple[str, int], int]:
    """Next input offset per (input topic, partition) according to the stage-1 seals: the
    latest ``{p}|p = [offset, watermark]`` record on each fold table's changelog."""
    from streams.topics import FOLD_TABLES, changelog_topic

    out: dict[tuple[str, int], int] = {}
    for topic, table in FOLD_TABLES.items():
        for key, value in asyncio.run(
            read_raw(broker.bootstrap, changelog_topic(settings, table), 1.0)
        ):
            if key is None or value is None:
                continue
            k = codecs.loads(key)
            if isinstance(k, str) and k.endswith("|p") and k.count("|") == 1:
                out[(topic, int(k[:-2]))] = codecs.loads(value)[0] + 1
    return out


def wait_folded(broker: EmbeddedBroker, settings: Settings, ends: dict[tuple[str, int], int],
                worker: harness.Worker, what: str, timeout: float = 120) -> None:  # fmt: skip
    """Stage 1 has folded every input record (its seals reached ``ends``). Unlike ``caught_up``
    this does not rely on committed offsets: a restarted Faust consumer sometimes stops
    committing (see docs/crash-safety.md, "Known gaps") while it keeps folding. Stage 2 is
    waited for by :func:`final_scores` (no new score record for a while)."""

    def done() -> bool:
        got = sealed(broker, settings)
        return all(got.get(tp, 0) >= end for tp, end in ends.items())

    def fail() -> str:
        got = sealed(broker, settings)
        short = {
            f"{t}[{p}]": f"{got.get((t, p))}/{e}"
            for (t, p), e in ends.items()
            if got.get((t, p), 0) < e
        }
        return (
            f"not sealed: {short}; commits lag: {lag(broker, settings, ends)}\n{worker.log_tail()}"
        )

    harness.wait_until(done, timeout, what, fail)


def wait_settled(broker: EmbeddedBroker, settings: Settings, ends: dict[tuple[str, int], int],
                 worker: harness.Worker, what: str, timeout: float = 300) -> None:  # fmt: skip
    """Stage 1 sealed every input record, then stage 2 committed the partials it was sent.

    The second wait is bounded at 60 s and not an error: Faust's consumer sometimes stops
    committing after a restart (docs/crash-safety.md, "Known gaps") while it keeps processing;
    :func:`final_scores` then waits for the score records to stop changing."""
    wait_folded(broker, settings, ends, worker, what, timeout)
    partials = f"{settings.app_id}-partials"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = asyncio.run(harness.message_counts(broker.bootstrap, partials))
        got = asyncio.run(harness.committed(broker.bootstrap, settings.app_id, counts))
        if all(got.get(tp, 0) >= end for tp, end in counts.items()):
            return
        time.sleep(0.5)
    print(f"\n{what}: stage 2 did not commit all partials within 60 s (commit stall?)")


def final_scores(
    broker: EmbeddedBroker, timeout: float = 90, idle_s: float = 4.0
) -> dict[str, Any]:
    """Latest ``cx.scores`` per key once no new record arrived for ``idle_s`` (call it after
    stage 1 is done: stage 2 and the throttled emission then settle)."""
    seen = -1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = asyncio.run(harness.read_all(broker.bootstrap, "cx.scores", idle_s=idle_s))
        if len(latest) == seen:
            return harness.comparable({k.decode(): v for k, v in latest if k is not None})
        seen = len(latest)
    raise AssertionError("cx.scores never settled")


def assert_same_scores(got: dict[str, Any], want: dict[str, Any]) -> int:
    """``got == want`` (both ``harness.comparable``) except ``as_of``; returns how many records
    differ in ``as_of`` only.

    ``as_of`` is the watermark when a record was last *emitted*, and stage 2 re-emits a record
    only when its value, counts or window start change (``Merger.evaluate`` signature), so it
    depends on batch timing: two clean memory-store runs over the same input, one fed at once
    and one in three phases, differ in ``as_of`` and nothing else (see docs/crash-safety.md).
    """

    a, b = without_as_of(got), without_as_of(want)
    assert a == b, diff(a, b)
    return sum(got[k]["as_of"] != want[k]["as_of"] for k in got)


def without_as_of(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: {f: v for f, v in r.items() if f != "as_of"} for k, r in scores.items()}


def diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    only = sorted(set(a) ^ set(b))[:5]
    changed = [k for k in sorted(set(a) & set(b)) if a[k] != b[k]][:3]
    return (f"{len(a)} vs {len(b)} keys; only in one: {only}\nchanged: "
            + "\n".join(f"{k}: {a[k]} != {b[k]}" for k in changed))  # fmt: skip


def input_ends(ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    from streams.topics import INPUTS

    return {tp: o for tp, o in ends.items() if tp[0] in INPUTS}


def merge_ends(*parts: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for part in parts:
        for tp, o in part.items():
            out[tp] = max(out.get(tp, 0), o)
    return out


async def produce_big(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes | None]],
                      max_request_size: int = 4 * 2**20) -> dict[tuple[str, int], int]:  # fmt: skip
    """Like ``harness.produce_tracked`` but allows values up to ``max_request_size`` and None
    keys/values (tombstones)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                enable_idempotence=False, max_request_size=max_request_size)  # fmt: skip
    await producer.start()
    ends: dict[tuple[str, int], int] = {}
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        for md in await asyncio.gather(*futures):
            tp = (md.topic, md.partition)
            ends[tp] = max(ends.get(tp, 0), md.offset + 1)
    finally:
        await producer.stop()
    return ends


async def read_raw(
    bootstrap: str, topic: str, idle_s: float = 3.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of ``topic``, large messages included, read until idle."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=8 * 2**20, fetch_max_bytes=64 * 2**20)  # fmt: skip
    out: list[tuple[bytes | None, bytes | None]] = []
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=10_000)
            if not batch:
                return out
            for messages in batch.values():
                out.extend((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()


def loads(value: bytes | None) -> Any:
    return None if value is None else codecs.loads(value)
