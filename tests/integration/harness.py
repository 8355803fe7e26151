"""Running real worker processes against the test broker, and reading what they publish."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams import codecs
from streams.broker import free_port
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    return {
        "CX_BROKER": settings.broker,
        "CX_APP_ID": settings.app_id,
        "CX_PARTITIONS": str(settings.partitions),
        "CX_MIN_SAMPLE": str(settings.min_sample),
        "CX_WINDOWS": ",".join(settings.windows),
        "CX_DIMENSIONS": ",".join(settings.dimensions),
        "CX_EMIT_INTERVAL": str(settings.emit_interval),
        "CX_SESSION_TIMEOUT": str(settings.session_timeout),
        "CX_BATCH_WITHIN": str(settings.batch_within),
        "CX_BATCH_DELIVERY": "1" if settings.batch_delivery else "0",
        "CX_LOGLEVEL": "info",
    }


class Worker:
    """``cxpulse worker`` in a subprocess with its own web port and data dir."""

    def __init__(self, settings: Settings, workdir: Path, name: str = "w1") -> None:
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.data_dir = workdir / f"{name}-data"
        env = {
            **os.environ,
            **settings_env(settings),
            "CX_WEB_PORT": str(self.port),
            "CX_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def events_total(workers: Iterable[Worker]) -> dict[tuple[str, str], float]:
    """``cx_events_total`` summed over workers, by (topic, outcome)."""
    totals: dict[tuple[str, str], float] = {}
    for w in workers:
        if not w.alive():
            continue
        try:
            samples = w.samples()
        except OSError:
            continue
        for (name, labels), value in samples.items():
            if name == "cx_events_total":
                d = dict(labels)
                key = (d["topic"], d["outcome"])
                totals[key] = totals.get(key, 0.0) + value
    return totals


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               on_fail: Callable[[], str] = lambda: "") -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{on_fail()}")


async def produce(bootstrap: str, messages: Iterable[tuple[str, bytes, bytes | None]]) -> int:
    """Produce in order, one at a time per key order (acks=all), returning the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                                enable_idempotence=False)  # fmt: skip
    await producer.start()
    count = 0
    try:
        futures = []
        for topic, key, value in messages:
            futures.append(await producer.send(topic, value, key=key))
            count += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


async def read_all(
    bootstrap: str, topic: str, idle_s: float = 3.0
) -> list[tuple[bytes | None, Any]]:
    """Every message of ``topic`` (key, decoded JSON value), read until idle for ``idle_s``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)  # fmt: skip
    out: list[tuple[bytes | None, Any]] = []
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=10_000)
            if not batch:
                return out
            for messages in batch.values():
                out.extend((m.key, codecs.loads(m.value)) for m in messages if m.value is not None)
    finally:
        await consumer.stop()


async def produce_tracked(
    bootstrap: str, messages: Iterable[tuple[str, bytes, bytes | None]]
) -> dict[tuple[str, int], int]:
    """Produce in order; return the next offset to consume per (topic, partition) once all
    are written (the committed offset a consumer group reaches when it has read everything)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                enable_idempotence=False)  # fmt: skip
    await producer.start()
    ends: dict[tuple[str, int], int] = {}
    try:
        futures = []
        for topic, key, value in messages:
            futures.append(await producer.send(topic, value, key=key))
            if len(futures) >= 5000:
                for md in await asyncio.gather(*futures):
                    tp = (md.topic, md.partition)
                    ends[tp] = max(ends.get(tp, 0), md.offset + 1)
                futures = []
        for md in await asyncio.gather(*futures):
            tp = (md.topic, md.partition)
            ends[tp] = max(ends.get(tp, 0), md.offset + 1)
    finally:
        await producer.stop()
    return ends


async def committed(
    bootstrap: str, group: str, tps: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The consumer group's committed offsets (OffsetFetch through a consumer that never joins
    the group: Tansu does not answer aiokafka's admin list_consumer_group_offsets)."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    out = {}
    try:
        for topic, partition in tps:
            offset = await consumer.committed(TopicPartition(topic, partition))
            if offset is not None:
                out[(topic, partition)] = offset
    finally:
        await consumer.stop()
    return out


def comparable(records: dict[str, Any]) -> dict[str, Any]:
    """Latest score records without the fields that legitimately differ between runs."""
    return {
        k: {f: v for f, v in r.items() if f not in ("revision", "emitted_at")}
        for k, r in records.items()
    }


async def message_counts(
    bootstrap: str, topic: str, idle_s: float = 1.0
) -> dict[tuple[str, int], int]:
    """Next offset after the last message, per partition, by reading the topic (Tansu's
    ListOffsets answer can be short of the real end, see streams/scores_view.py)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, fetch_max_bytes=50 * 2**20)  # fmt: skip
    ends: dict[tuple[str, int], int] = {}
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=50_000)
            if not batch:
                return ends
            for tp, messages in batch.items():
                ends[(tp.topic, tp.partition)] = messages[-1].offset + 1
    finally:
        await consumer.stop()


def caught_up(
    bootstrap: str, group: str, input_ends: dict[tuple[str, int], int], partials: str
) -> bool:
    """Stage 1 has committed every input record and stage 2 every partials message."""
    if not all(
        o >= input_ends[tp]
        for tp, o in asyncio.run(committed(bootstrap, group, input_ends)).items()
    ) or len(asyncio.run(committed(bootstrap, group, input_ends))) < len(input_ends):
        return False
    ends = asyncio.run(message_counts(bootstrap, partials))
    got = asyncio.run(committed(bootstrap, group, ends))
    return all(got.get(tp, 0) >= end for tp, end in ends.items())
