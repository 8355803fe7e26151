"""``cxpulse replay``: CSV/JSONL history into the input topics, driven by a TOML mapping.

:mod:`streams.mappings` turns rows into events (and documents the mapping format); here they
are ordered by event time (``order = "time"``, the default: the worker's watermark then moves
forward as with live traffic) or kept in file order, optionally shifted in time
(``--shift-to-now``: the newest event lands on the wall clock, so a live worker's windows show
the data), serialised, and checked with :func:`streams.events.decode`: an event that the worker
would dead-letter is skipped here instead (reason ``invalid_<code>``). Then they are produced
with aiokafka, keyed by ``customer_id``, with a progress line on stderr.

Events keep their times as RFC 3339 strings with the offset of the source (``Z`` for UTC).
Ids come from the data, so replaying a file twice counts its events once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import orjson

from streams import events as ev
from streams.mappings import (
    BUILTIN,
    TIME_FIELDS,
    Mapping,
    MappingError,
    Pending,
    ReplayStats,
    epoch_ms,
    load_mapping,
    map_rows,
    parse_time,
)
from streams.settings import Settings

Message = tuple[str, bytes, bytes]


def _max_time_ms(pending: Iterable[Pending]) -> int | None:
    times = [
        epoch_ms(v)
        for p in pending
        for f in TIME_FIELDS
        if isinstance(v := p.value.get(f), datetime)
    ]
    return max(times) if times else None


def _until(pending: Iterable[Pending], until_ms: int, stats: ReplayStats) -> Iterator[Pending]:
    for p in pending:
        if p.t_ms is not None and p.t_ms >= until_ms:
            stats.notes["after_until"] += 1
        else:
            yield p


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rows_to_events(
    mapping: Mapping,
    path: str | Path | None = None,
    *,
    limit: int | None = None,
    time_shift: int | str | None = None,
    until_ms: int | None = None,
    stats: ReplayStats | None = None,
) -> Iterator[Message]:
    """``(topic, key, value)`` per event: key = the customer id, value = JSON bytes.

    ``until_ms`` drops the events whose event time is at or after it (note ``after_until``),
    before anything else: history up to a point. ``time_shift``: ``None``; an offset in
    milliseconds added to every time field; or ``"now"``: the offset that moves the newest
    time left to the wall clock. ``limit`` caps the events yielded (after ordering).
    ``stats`` is filled as it goes.
    """
    stats = stats if stats is not None else ReplayStats()
    source = Path(path) if path is not None else mapping.dataset_path()
    pending: Iterable[Pending] = map_rows(mapping, source, stats)
    if until_ms is not None:
        pending = _until(pending, until_ms, stats)
    if mapping.order == "time" or time_shift == "now":
        pending = list(pending)
        if mapping.order == "time":
            pending.sort(key=lambda p: -(2**63) if p.t_ms is None else p.t_ms)
    if time_shift == "now":
        newest = _max_time_ms(pending)
        shift_ms = 0 if newest is None else now_ms() - newest
    elif isinstance(time_shift, str):
        raise ValueError(f"time_shift must be 'now', milliseconds or None, not {time_shift!r}")
    else:
        shift_ms = time_shift or 0
    shift = timedelta(milliseconds=shift_ms)
    check_now = ev.MAX_TIME_MS  # no future check here: the worker applies its own clock
    produced = 0
    for p in pending:
        if limit is not None and produced >= limit:
            return
        value = p.value
        if shift:
            for f in TIME_FIELDS:
                if isinstance(t := value.get(f), datetime):
                    value[f] = t + shift
        raw = orjson.dumps(value, option=orjson.OPT_UTC_Z)
        decoded = ev.decode(p.topic, raw, check_now)
        if isinstance(decoded, ev.Rejection):
            stats.skipped[f"invalid_{decoded.reason}"] += 1
            continue
        produced += 1
        stats.events += 1
        stats.topics[p.topic] += 1
        yield p.topic, p.key.encode(), raw


# --- producing -----------------------------------------------------------------------------


class Progress:
    """``count/total events, rate/s, ETA`` on one ``\\r``-rewritten stderr line (a line every
    few seconds when stderr is not a terminal)."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else 5.0
        self.t0 = self.last = time.monotonic()
        self.count = 0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.count / elapsed
        text = f"{self.label}: {self.count:,}"
        if self.total is not None:
            text += f"/{self.total:,}"
        text += f" events  {rate:,.0f}/s"
        if self.total is not None and rate > 0:
            eta = int((self.total - self.count) / rate)
            text += f"  ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
        return text

    def update(self, count: int) -> None:
        self.count = count
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write(self.line())

    def close(self) -> None:
        self._write(self.line())
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write(f"\r{text}\x1b[K" if self.tty else f"{text}\n")
        self.stream.flush()


_CHUNK = 2000  # await delivery every this many sends: bounded memory, errors surface early


async def produce_messages(
    bootstrap: str,
    messages: Iterable[Message],
    *,
    rate: float | None = None,
    progress: Progress | None = None,
    linger_ms: int = 20,
) -> int:
    """Send ``(topic, key, value)`` at most ``rate`` per second; return the count acked."""
    from aiokafka import AIOKafkaProducer

    # Tansu fails InitProducerId: no idempotent producer; acks=all still waits for the write.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
        linger_ms=linger_ms, max_batch_size=256 * 1024,
    )  # fmt: skip
    pending: list[asyncio.Future[Any]] = []
    sent = acked = 0
    loop = asyncio.get_running_loop()
    try:
        await producer.start()
        t0 = loop.time()
        for topic, key, value in messages:
            if rate is not None:
                wait = t0 + sent / rate - loop.time()
                if wait > 0.002:
                    if pending and wait > 0.05:  # idle anyway: confirm what was sent
                        acked += len(await asyncio.gather(*pending))
                        pending.clear()
                    await asyncio.sleep(wait)
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if progress is not None:
                progress.update(sent)
            if len(pending) >= _CHUNK:
                acked += len(await asyncio.gather(*pending))
                pending.clear()
        acked += len(await asyncio.gather(*pending))
        if progress is not None:
            progress.update(acked)
        return acked
    finally:
        await producer.stop()


async def replay(
    settings: Settings,
    mapping_path: str | Path | Mapping,
    data_path: str | Path | None = None,
    *,
    rate: float | None = None,
    limit: int | None = None,
    progress: bool = True,
    time_shift: int | str | None = None,
    until_ms: int | None = None,
    kind_options: dict[str, Any] | None = None,
    create_topics: bool = True,
) -> ReplayStats:
    """Map ``data_path`` (default: the mapping's dataset) and produce it to ``settings``'
    broker. ``rate`` is messages per second (None: as fast as possible); ``time_shift`` as in
    :func:`rows_to_events` (``"now"`` = ``--shift-to-now``). Topics are created first
    (idempotent): Tansu would auto-create a missing one without configs."""
    mapping = mapping_path if isinstance(mapping_path, Mapping) else load_mapping(mapping_path)
    mapping = mapping.with_kind_options(**(kind_options or {}))
    stats = ReplayStats()
    started = time.monotonic()
    # Materialised: the total gives the ETA, and a bad file fails before anything is sent.
    messages = list(
        rows_to_events(
            mapping, data_path, limit=limit, time_shift=time_shift, until_ms=until_ms, stats=stats
        )
    )
    if create_topics:
        from streams.topics import create_topics as create
        from streams.topics import topic_specs

        await create(settings.bootstrap, topic_specs(settings))
    bar = Progress(f"replay {mapping.name}", len(messages)) if progress else None
    try:
        stats.events = await produce_messages(settings.bootstrap, messages, rate=rate, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    stats.seconds = time.monotonic() - started
    return stats


# --- CLI -----------------------------------------------------------------------------------


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    shift: str | None = "now" if args.shift_to_now else None
    try:
        mapping = load_mapping(args.mapping).with_kind_options(anchor=args.anchor)
        until = None if args.until is None else epoch_ms(parse_time(args.until, "iso", UTC))
        if args.dry_run:
            stats = ReplayStats()
            count = 10 if args.limit is None else args.limit
            for topic, key, value in rows_to_events(
                mapping, args.input, limit=count, time_shift=shift, until_ms=until, stats=stats
            ):
                line = {"topic": topic, "key": key.decode(), "value": orjson.loads(value)}
                print(orjson.dumps(line).decode())
            print(f"dry run ({mapping.name}): {stats.summary()}", file=sys.stderr)
            return 0
        stats = asyncio.run(
            replay(
                settings,
                mapping,
                args.input,
                rate=args.rate,
                limit=args.limit,
                progress=not args.quiet,
                time_shift=shift,
            )  # fmt: skip
        )
    except (OSError, ValueError) as exc:  # MappingError is a ValueError; bad file or anchor
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    print(f"replayed {mapping.name}: {stats.summary()}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``replay`` on an ``add_subparsers()`` object; returns the new parser (so the
    caller can add the shared settings options)."""
    p = subparsers.add_parser(
        "replay",
        help="replay CSV/JSONL history into the input topics",
        description="Map a CSV/JSONL file to input events with a TOML mapping and produce them.",
    )
    p.add_argument(
        "--mapping", required=True, metavar="NAME|PATH",
        help=f"mapping TOML file, or a built-in one: {', '.join(BUILTIN)}",
    )  # fmt: skip
    p.add_argument("--input", default=None, metavar="PATH",
                   help="data file (.csv/.jsonl, optionally .gz); default: the mapping's dataset")  # fmt: skip
    p.add_argument("--rate", type=float, default=None, help="messages per second (default: max)")
    p.add_argument("--limit", type=int, default=None,
                   help="produce at most N events (dry run: print N, default 10)")  # fmt: skip
    p.add_argument("--shift-to-now", action="store_true",
                   help="shift all times so that the newest event is now (for a live worker)")  # fmt: skip
    p.add_argument("--until", default=None, metavar="RFC3339",
                   help="only events before this time (e.g. 2016-06-01 for the busy ITSM months)")  # fmt: skip
    p.add_argument("--anchor", default=None, metavar="RFC3339",
                   help="telco: the date the churn table describes (default in the mapping)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true",
                   help="print events as JSON lines instead of producing")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(fn=cmd_replay)
    return p


__all__ = [
    "BUILTIN",
    "Mapping",
    "MappingError",
    "Progress",
    "ReplayStats",
    "add_parser",
    "cmd_replay",
    "load_mapping",
    "produce_messages",
    "replay",
    "rows_to_events",
]
