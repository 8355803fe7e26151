"""Read the latest ``cx.scores`` record per key and print them as a table (``cxpulse scores``),
once or continuously (``cxpulse scores --watch``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer

from streams import codecs
from streams.topics import SCORES

CLEAR = "\x1b[H\x1b[2J"  # cursor home + clear screen: the frame is redrawn in place
CATCH_UP_S = 10.0  # longest wait for the backlog before the first frame

Records = dict[str, dict[str, Any]]


class Message(Protocol):
    key: bytes | None
    value: bytes | None


class Consumer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(self, *partitions: Any, timeout_ms: int = ..., max_records: int | None = ...
                      ) -> Mapping[Any, list[Any]]: ...  # fmt: skip


def apply(records: Records, key: bytes | None, value: bytes | None) -> bool:
    """Fold one message: the latest record per key wins, a tombstone removes the key.
    Returns whether ``records`` changed."""
    if key is None:
        return False
    k = key.decode(errors="replace")
    if value is None:
        return records.pop(k, None) is not None
    records[k] = codecs.loads(value)
    return True


class ScoreFeed:
    """One consumer (no group, from the beginning) kept open: :meth:`poll` folds only what
    arrived since the previous call into :attr:`records`."""

    def __init__(self, bootstrap: str, *, topic: str = SCORES,
                 consumer: Consumer | None = None) -> None:  # fmt: skip
        self.records: Records = {}
        self.consumer: Consumer = consumer or AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )

    async def __aenter__(self) -> ScoreFeed:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, idle_s: float, *, max_s: float | None = None) -> int:
        """Fold batches until a fetch waits ``idle_s`` with nothing new, or ``max_s`` passed;
        return the number of messages folded."""
        loop = asyncio.get_running_loop()
        deadline = None if max_s is None else loop.time() + max_s
        folded = 0
        while True:
            wait = idle_s if deadline is None else min(idle_s, deadline - loop.time())
            if wait <= 0:
                return folded
            batch = await self.consumer.getmany(timeout_ms=int(wait * 1000), max_records=10_000)
            if not batch:
                return folded
            for messages in batch.values():
                for m in messages:
                    apply(self.records, m.key, m.value)
                    folded += 1


async def latest_scores(
    bootstrap: str, *, idle_s: float = 2.0, topic: str = SCORES
) -> dict[str, dict[str, Any]]:
    """Latest record per key, reading from the beginning until ``idle_s`` pass with nothing new.

    Reads until idle rather than to the end offsets: Tansu reports a partition's end offset as
    the base offset of its last record batch + 1, which can be short of the real end.
    """
    async with ScoreFeed(bootstrap, topic=topic) as feed:
        await feed.poll(idle_s)
        return feed.records


def render_watch(
    records: Records,
    *,
    now: datetime,
    interval: float,
    source: str,
    window: str | None = None,
    dimension: str | None = None,
    metric: str | None = None,
) -> str:
    """One frame of ``cxpulse scores --watch``: clear screen, a status line, the table."""
    filters = " ".join(
        f"{name}={value}"
        for name, value in (("window", window), ("dimension", dimension), ("metric", metric))
        if value is not None
    )
    status = (
        f"cxpulse scores --watch  {source}  {len(records)} keys"
        f"{'  ' + filters if filters else ''}  {now.astimezone(UTC):%H:%M:%S} UTC"
        f"  (every {interval:g} s, Ctrl-C quits)"
    )
    table = format_table(records, window=window, dimension=dimension, metric=metric)
    return f"{CLEAR}{status}\n\n{table}\n"


async def watch(
    bootstrap: str,
    *,
    interval: float = 2.0,
    window: str | None = None,
    dimension: str | None = None,
    metric: str | None = None,
    write: Callable[[str], object] = sys.stdout.write,
    flush: Callable[[], object] = sys.stdout.flush,
    consumer: Consumer | None = None,
    stop: asyncio.Event | None = None,
    max_frames: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Redraw the table every ``interval`` seconds until SIGINT (Ctrl-C), ``stop`` is set or
    ``max_frames`` were drawn; returns the number of frames. One consumer for the whole run."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        # Not on Windows / outside the main thread: Ctrl-C then raises KeyboardInterrupt.
        loop.add_signal_handler(signal.SIGINT, stop.set)
    frames = 0
    try:
        async with ScoreFeed(bootstrap, consumer=consumer) as feed:
            # The first frame once the backlog is read (bounded: a busy topic never idles).
            next_frame = time.monotonic() + CATCH_UP_S
            while not stop.is_set() and time.monotonic() < next_frame:
                if not await feed.poll(0.5, max_s=min(0.5, next_frame - time.monotonic())):
                    break
            next_frame = time.monotonic()
            while not stop.is_set():
                # Fold in small slices so Ctrl-C is noticed quickly even with a long interval.
                while not stop.is_set() and (left := next_frame - time.monotonic()) > 0:
                    await feed.poll(min(0.25, left), max_s=left)
                if stop.is_set():
                    break
                write(render_watch(feed.records, now=clock(), interval=interval,
                                   source=bootstrap, window=window, dimension=dimension,
                                   metric=metric))  # fmt: skip
                flush()
                frames += 1
                if max_frames is not None and frames >= max_frames:
                    break
                next_frame += interval
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
    return frames


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(
    records: dict[str, dict[str, Any]],
    *,
    window: str | None = None,
    dimension: str | None = None,
    metric: str | None = None,
) -> str:
    rows = [
        r
        for r in records.values()
        if (window is None or r["window"] == window)
        and (dimension is None or r["dimension"] == dimension)
        and (metric is None or r["metric"] == metric)
    ]
    if not rows:
        return "no scores yet (is a worker running and fed?)"
    rows.sort(key=lambda r: (r["metric"], r["window"], r["dimension"], r["member"]))
    header = ("metric", "window", "dimension", "member", "value", "ci95", "n", "as_of")
    lines = [header]
    for r in rows:
        ci = "" if r.get("ci95_low") is None else f"[{_fmt(r['ci95_low'])}, {_fmt(r['ci95_high'])}]"
        lines.append(
            (
                r["metric"],
                r["window"],
                r["dimension"],
                r["member"],
                _fmt(r["value"]),
                ci,
                str(r["n"]),
                r["as_of"],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    )
