"""``cxpulse bench``: throughput, drain, latency and memory of one worker on a fresh broker.

The machine is noisy, so every figure comes with a baseline measured in the same run:

1. **raw**: an aiokafka consumer reads and ``orjson``-decodes every produced message
   (``raw_events_per_s``): what the broker and the client library allow on this machine.
2. **end-to-end**: a ``cxpulse worker`` subprocess folds the same messages; ``/metrics`` is
   polled (up to 20 Hz, within a CPU budget: see :func:`end_to_end`) and ``events_per_s`` is
   the events counted after the first poll that saw any, over the time from that poll to the
   one that saw the last (``events_timed`` of ``produced``; the worker's CPU per event is
   taken over the same span). ``drain_s`` is how long after that the last ``cx.scores``
   record was written.
3. **latency**: NPS answers of a fresh segment at a steady rate; the latency of answer *i* is
   the broker timestamp of the first ``nps|<window>|segment=bench-latency`` record whose ``n``
   reaches *i + 1*, minus its send time. Baseline: the same answers read back raw, by a
   consumer configured like Faust's (one broker hop; the worker's path has two: input and
   partials).

Tansu quirk relied on: ``end_offsets()`` / ``seek_to_end()`` answer the base offset of a
partition's last batch + 1, so "read everything" is decided by counting messages or idling,
and phase 3 positions its consumers where earlier reads actually ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams import codecs, topics
from streams.broker import EmbeddedBroker, free_port
from streams.delivery import FETCH_MAX_WAIT_MS
from streams.generate import Message, generate_timed, produce
from streams.settings import Settings, parse_duration
from streams.topics import create_topics, topic_specs

LATENCY_SEGMENT = "bench-latency"
EVENT_RATE = 200.0  # messages per second of event time (`cxpulse generate`'s default)
MIN_HISTORY_S = 900  # event times span at least this much, so held-back answers are late
POLL_BUDGET = 0.05  # /metrics is served by the worker's own loop: at most ~5% of its time
IDLE_S = 3.0  # cx.scores is drained when nothing arrived for this long
STALL_S = 120.0  # phase 2 fails when cx_events_total does not move for this long
START_TIMEOUT_S = 120.0  # worker start + group join until the first counted event
FAUST_FETCH_MAX_WAIT_MS = FETCH_MAX_WAIT_MS  # the worker's consumer (streams/delivery.py)
FETCH = {"fetch_max_bytes": 64 << 20, "max_partition_fetch_bytes": 16 << 20}


class BenchError(RuntimeError):
    """A phase failed or timed out (the worker log tail is printed by :func:`run`)."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="throughput, latency and memory on a fresh broker")
    p.add_argument("--events", type=int, default=200_000, help="activity messages to fold")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--latency-rate", type=float, default=2000.0, help="events/s in phase 3")
    p.add_argument("--latency-seconds", type=float, default=20.0, help="length of phase 3")
    p.add_argument("--emit-interval", type=float, default=0.1, help="worker CX_EMIT_INTERVAL, s")
    p.add_argument("--poll-hz", type=float, default=20.0, help="max /metrics polls per second")
    p.add_argument("--json", action="store_true", help="print one JSON line last")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.add_argument("--keep-logs", default=None, metavar="DIR", help="keep broker/worker logs")
    p.set_defaults(fn=run)


# --- input data ---------------------------------------------------------------------------


@dataclass
class Workload:
    messages: list[Message]
    duplicates: int
    late: int


def build_workload(seed: int, n: int, end_ms: int, late_after_s: int) -> Workload:
    """``n`` generated messages ending at ``end_ms``, plus 1% re-sent duplicates
    (same key and value, a few hundred messages later) and ~1% of old survey answers held back
    and sent last, so the worker sees them as late."""
    history_s = max(MIN_HISTORY_S, n / EVENT_RATE)
    start_ms = end_ms - int(history_s * 1000)
    timed = list(generate_timed(seed, n, start_ms, rate_per_s=n / history_s))
    # The generator's stream runs past start + n / rate (1M events: 84k of them, up to 7 min
    # after end_ms). Events ahead of the wall clock pushed the worker's watermark up to its
    # future tolerance ahead of "now" (more than max_future_s ahead: dead letters), so the
    # latency phase's answers fell behind the 5m window. Same stream, started earlier:
    overshoot = timed[-1][0] - end_ms if timed else 0
    if overshoot > 0:
        timed = list(generate_timed(seed, n, start_ms - overshoot, rate_per_s=n / history_s))
    rng = random.Random(seed)
    late_before = end_ms - (late_after_s + 120) * 1000
    eligible = [
        i for i, (t, topic, _k, _v) in enumerate(timed)
        if topic == topics.SURVEY_RESPONSES and t < late_before
    ]  # fmt: skip
    held = set(rng.sample(eligible, min(len(eligible), n // 100)))
    events = [i for i, m in enumerate(timed) if m[1] != topics.CUSTOMERS and i not in held]
    dup_at: dict[int, list[int]] = {}
    for i in rng.sample(events, min(len(events), n // 100)):
        dup_at.setdefault(min(len(timed) - 1, i + rng.randint(1, 500)), []).append(i)
    out: list[Message] = []
    for i, (_t, topic, key, value) in enumerate(timed):
        if i not in held:
            out.append((topic, key, value))
        for j in dup_at.get(i, ()):
            out.append(timed[j][1:])
    out.extend(timed[i][1:] for i in sorted(held))
    return Workload(out, sum(len(v) for v in dup_at.values()), len(held))


def latency_message(i: int, tag: str, segment: str = LATENCY_SEGMENT) -> Message:
    customer = f"bench-cus-{i % 1000:04d}"
    value = {
        "response_id": f"bench-{tag}-{i}", "customer_id": customer, "survey": "nps",
        "score": 9, "occurred_at": time.time_ns() // 1_000_000, "channel": "web",
        "touchpoint": "product", "segment": segment, "region": "na", "plan": "pro",
    }  # fmt: skip
    return topics.SURVEY_RESPONSES, customer.encode(), codecs.compact(orjson.dumps(value))


# --- the worker subprocess ------------------------------------------------------------------


def _proc_status_mb(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, kb = line.split()[:2]
                out[name.rstrip(":")] = int(kb) / 1024
    return out


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far; 0.0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class WorkerProc:
    """``python -m streams.cli worker`` with its own app id, web port and data dir."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.port = settings.web_port
        self.log_path = workdir / "worker.log"
        env = {
            **os.environ,
            "CX_BROKER": settings.broker,
            "CX_APP_ID": settings.app_id,
            "CX_WEB_PORT": str(settings.web_port),
            "CX_DATA_DIR": settings.data_dir,
            "CX_PARTITIONS": str(settings.partitions),
            "CX_SESSION_TIMEOUT": "6",
            "CX_LOGLEVEL": "warning",
            "CX_EMIT_INTERVAL": str(settings.emit_interval),
            "CX_STORE": settings.store,
            "CX_MIN_SAMPLE": str(settings.min_sample),
            "CX_WINDOWS": ",".join(settings.windows),
            "CX_DIMENSIONS": ",".join(settings.dimensions),
            "CX_MAX_MEMBERS": str(settings.max_members),
            "CX_BATCH_DELIVERY": "1" if settings.batch_delivery else "0",
            "PYTHONUNBUFFERED": "1",
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.started = time.monotonic()

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise BenchError(f"the worker exited with code {code}")

    def memory_mb(self) -> dict[str, float]:
        return _proc_status_mb(self.proc.pid)

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.proc.pid)

    def events_by_outcome(self) -> dict[str, float] | None:
        """``cx_events_total`` summed by outcome; None when ``/metrics`` did not answer."""
        # name[]: the worker renders this family only (streams/app.py).
        url = f"http://127.0.0.1:{self.port}/metrics?name[]=cx_events_total"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        # Parse only our family: the full page has thousands of cx_score series.
        wanted = ("cx_events_total", "# HELP cx_events ", "# TYPE cx_events ")
        lines = "\n".join(x for x in text.splitlines() if x.startswith(wanted)) + "\n"
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(lines):
            for s in family.samples:
                if s.name == "cx_events_total":
                    outcome = s.labels["outcome"]
                    out[outcome] = out.get(outcome, 0.0) + s.value
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no worker log)"
        return "\n".join(text[-lines:]) or "(empty worker log)"


# --- phases -----------------------------------------------------------------------------------


def _consumer(bootstrap: str, **extra: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", **FETCH, **extra,
    )  # fmt: skip


async def raw_consume(
    bootstrap: str, tps: list[TopicPartition], expected: int, timeout_s: float
) -> tuple[float, float, dict[TopicPartition, int]]:
    """Phase 1: read and decode ``expected`` messages; returns (events/s, CPU seconds of this
    process per event over the same span, end positions)."""
    consumer = _consumer(bootstrap)
    count = 0
    t_first = t_last = 0.0
    cpu_first = cpu_last = 0.0
    try:
        await consumer.start()
        consumer.assign(tps)
        async with asyncio.timeout(timeout_s):
            while count < expected:
                batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
                if batch and not t_first:
                    t_first = time.perf_counter()  # the first message is here, not yet decoded
                    cpu_first = time.process_time()
                for records in batch.values():
                    for m in records:
                        if m.value is not None:
                            orjson.loads(m.value)
                    count += len(records)
                if batch:
                    t_last, cpu_last = time.perf_counter(), time.process_time()
        positions = {tp: await consumer.position(tp) for tp in tps}
    except TimeoutError:
        raise BenchError(
            f"raw consume: {count} of {expected} messages in {timeout_s:.0f}s"
        ) from None
    finally:
        await consumer.stop()
    return count / max(t_last - t_first, 1e-6), (cpu_last - cpu_first) / max(count, 1), positions


@dataclass
class EndToEnd:
    t_first: float = 0.0  # monotonic
    t_done: float = 0.0
    done_wall: float = 0.0
    start_s: float = 0.0  # worker spawn -> first counted event
    outcomes: dict[str, float] = field(default_factory=dict)
    rss_start_mb: float = 0.0
    cpu_first: float = 0.0  # the worker's CPU seconds at t_first and t_done
    cpu_done: float = 0.0
    # events already counted at t_first: folded before the interval, so not timed in it (a
    # busy worker answers its first poll late, after ~50k events at 200k)
    n_first: float = 0.0
    # the first poll that saw events saw them all (a small run): t_first and cpu_first are
    # then the last poll's before, which saw none (a lower bound on the rate)
    within_one_poll: bool = False
    polls: int = 0
    poll_s: float = 0.0


async def end_to_end(
    worker: WorkerProc, expected: int, timeout_s: float, max_hz: float
) -> EndToEnd:
    """Phase 2: poll ``/metrics`` until ``cx_events_total`` reaches ``expected``.

    The page is rendered by the worker's own loop: ~90 ms for its ~550 kB once it carries
    ~1,300 cx_score series. At a fixed 20 Hz that was 80% of the worker's CPU and folding
    nearly stopped; so the period stretches to keep the polls within POLL_BUDGET of the
    worker's time (at most 2 s, which bounds the error on t_first/t_done).
    """
    r = EndToEnd()
    deadline = worker.started + START_TIMEOUT_S
    last_total, last_move = -1.0, time.monotonic()
    t_zero, cpu_zero = worker.started, 0.0  # the last poll that saw no event yet
    while True:
        worker.check()
        t0 = time.monotonic()
        outcomes = await asyncio.to_thread(worker.events_by_outcome)
        now = time.monotonic()
        r.polls += 1
        r.poll_s += now - t0
        total = sum(outcomes.values()) if outcomes is not None else last_total
        if outcomes is not None and total > 0 and not r.t_first:
            r.t_first, r.start_s = now, now - worker.started
            r.rss_start_mb = worker.memory_mb().get("VmRSS", 0.0)
            r.cpu_first, r.n_first = worker.cpu_s(), total
            deadline = now + timeout_s
            if total >= expected:  # all of it between two polls: no interval at all
                r.t_first, r.cpu_first, r.within_one_poll = t_zero, cpu_zero, True
                r.n_first = 0.0
        elif outcomes is not None and not r.t_first:
            t_zero, cpu_zero = now, worker.cpu_s()
        if outcomes is not None and total >= expected:
            r.t_done, r.done_wall, r.outcomes = now, time.time(), outcomes
            r.cpu_done = worker.cpu_s()
            return r
        if total != last_total:
            last_total, last_move = total, now
        elif r.t_first and now - last_move > STALL_S:
            raise BenchError(f"end-to-end: stuck at {total:.0f} of {expected} for {STALL_S:.0f}s")
        if now > deadline:
            what = "the first event" if not r.t_first else f"{expected} events (at {total:.0f})"
            raise BenchError(f"end-to-end: timed out waiting for {what}")
        period = min(2.0, max(1.0 / max_hz, (now - t0) / POLL_BUDGET))
        await asyncio.sleep(max(0.0, t0 + period - time.monotonic()))


async def read_until_idle(
    consumer: AIOKafkaConsumer, idle_s: float, timeout_s: float
) -> tuple[int, int]:
    """Read until nothing arrives for ``idle_s``; returns (records, max timestamp ms)."""
    count, max_ts = 0, 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=50_000)
        if not batch:
            return count, max_ts
        for records in batch.values():
            count += len(records)
            max_ts = max(max_ts, *(m.timestamp for m in records))
    raise BenchError(f"cx.scores did not go idle for {idle_s}s within {timeout_s:.0f}s")


def _p50_by_quarter(values: Sequence[float]) -> list[float]:
    """The median of each quarter of ``values`` (in send order), for the quarters not empty."""
    quarters = [values[len(values) * q // 4 : len(values) * (q + 1) // 4] for q in range(4)]
    return [percentile(x, 0.5) for x in quarters if x]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (0 < q <= 1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Latency:
    sent: list[float]  # wall-clock send time of event i
    e2e_ms: list[float] = field(default_factory=list)  # index = event
    raw_ms: list[float] = field(default_factory=list)


def _record_n(value: bytes) -> int:
    record = orjson.loads(value)
    return int((record.get("counts") or {}).get("n", record.get("n") or 0))


async def wait_for_n(consumer: AIOKafkaConsumer, key: bytes, n: int, timeout_s: float) -> int:
    """Read until a record of ``key`` reflects ``n`` events; returns the records read."""
    count = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
                for records in batch.values():
                    count += len(records)
                    for m in records:
                        if m.key == key and m.value is not None and _record_n(m.value) >= n:
                            return count
    except TimeoutError:
        raise BenchError(f"no {key.decode()} record with n >= {n} in {timeout_s:.0f}s") from None


async def _follow_scores(consumer: AIOKafkaConsumer, key: bytes, lat: Latency, total: int) -> None:
    """Event i is reflected by the first record of ``key`` whose n >= i + 1."""
    while len(lat.e2e_ms) < total:
        batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
        for records in batch.values():
            for m in records:
                if m.key != key or m.value is None:
                    continue
                n = _record_n(m.value)
                while len(lat.e2e_ms) < min(n, len(lat.sent)):
                    lat.e2e_ms.append(m.timestamp - lat.sent[len(lat.e2e_ms)] * 1000)


async def _follow_raw(consumer: AIOKafkaConsumer, tag: str, lat: Latency, total: int) -> None:
    prefix = f"bench-{tag}-"
    lat.raw_ms = [math.nan] * total
    seen = 0
    while seen < total:
        batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
        now = time.time()
        for records in batch.values():
            for m in records:
                rid = orjson.loads(m.value)["response_id"] if m.value else ""
                if rid.startswith(prefix):
                    i = int(rid[len(prefix) :])
                    lat.raw_ms[i] = (now - lat.sent[i]) * 1000
                    seen += 1


async def steady_latency(
    bootstrap: str,
    scores: AIOKafkaConsumer,
    survey_positions: dict[TopicPartition, int],
    key: bytes,
    rate: float,
    seconds: float,
    check: Callable[[], None],
) -> Latency:
    """Phase 3: ``rate`` NPS answers per second for ``seconds``, followed on ``cx.scores`` and
    raw on the input topic (from the positions where phase 1 stopped reading)."""
    total = max(1, round(rate * seconds))
    tag = uuid.uuid4().hex[:8]
    lat = Latency(sent=[])
    # Tansu answers a waiting fetch only every ~fetch_max_wait_ms / 2, even when data arrived
    # meanwhile; the baseline hop uses the worker consumer's setting (streams/delivery.py).
    raw = _consumer(bootstrap, fetch_max_wait_ms=FAUST_FETCH_MAX_WAIT_MS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=False)  # fmt: skip
    tasks: list[asyncio.Task[None]] = []
    try:
        await raw.start()
        raw.assign(list(survey_positions))
        for tp, pos in survey_positions.items():
            raw.seek(tp, pos)
        await producer.start()
        tasks = [
            asyncio.create_task(_follow_scores(scores, key, lat, total)),
            asyncio.create_task(_follow_raw(raw, tag, lat, total)),
        ]
        pending: list[asyncio.Future[Any]] = []
        t0 = time.monotonic()
        for i in range(total):
            wait = t0 + i / rate - time.monotonic()
            if wait > 0.001:
                await asyncio.sleep(wait)
            if i % 500 == 0:
                check()
            topic, k, v = latency_message(i, tag)
            lat.sent.append(time.time())
            pending.append(await producer.send(topic, v, key=k))
        await asyncio.gather(*pending)
        limit = time.monotonic() + 30.0 + 10 * seconds
        while not all(t.done() for t in tasks):
            check()
            if time.monotonic() > limit:
                raise BenchError(
                    f"latency: {len(lat.e2e_ms)} of {total} answers reflected in cx.scores, "
                    f"{sum(not math.isnan(x) for x in lat.raw_ms)} read back raw"
                )
            await asyncio.wait(tasks, timeout=0.5)
        for t in tasks:
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await producer.stop()
        await raw.stop()
    return lat


# --- orchestration ------------------------------------------------------------------------------


def _latency_window(settings: Settings, seconds: float) -> str:
    """The smallest window long enough that phase 3's answers never slide out of it."""
    fitting = [w for w in settings.windows if parse_duration(w) >= 2 * seconds + 60]
    return min(fitting or settings.windows, key=parse_duration)


def say(line: str) -> None:
    print(line, flush=True)


async def _bench(settings: Settings, args: argparse.Namespace, workdir: Path,
                 spawned: list[WorkerProc]) -> dict[str, Any]:  # fmt: skip
    bootstrap = settings.bootstrap
    await create_topics(bootstrap, topic_specs(settings))
    workload = build_workload(args.seed, args.events, int(time.time() * 1000) - 30_000,
                              settings.late_after_s)  # fmt: skip
    produced = len(workload.messages)
    say(
        f"bench: {args.events} events + {produced - args.events - workload.duplicates} customers"
        f" + {workload.duplicates} duplicates ({workload.late} sent late) = {produced} messages,"
        f" {settings.partitions} partitions, emit interval {settings.emit_interval:g} s,"
        f" batch delivery {'on' if settings.batch_delivery else 'off'}"
    )
    t0 = time.perf_counter()
    acked = await produce(bootstrap, workload.messages)
    produce_per_s = acked / (time.perf_counter() - t0)
    workload.messages.clear()  # up to ~100 MB at the default size

    inputs = [TopicPartition(t, p) for t in topics.INPUTS for p in range(settings.partitions)]
    raw_per_s, raw_cpu, positions = await raw_consume(
        bootstrap, inputs, produced, 60 + produced / 1000
    )
    say(f"produce      {produce_per_s:10,.0f} msg/s   (raw consume {raw_per_s:,.0f} msg/s)")
    say(f"raw consume  {raw_per_s:10,.0f} ev/s    (baseline: aiokafka + orjson.loads)")

    worker = WorkerProc(settings, workdir)
    spawned.append(worker)  # stopped by run(), whatever happens here
    e2e = await end_to_end(worker, produced, 300 + produced / 100, args.poll_hz)
    timed = produced - e2e.n_first  # the events folded between t_first and t_done
    events_per_s = timed / max(e2e.t_done - e2e.t_first, 1e-6)
    ratio = events_per_s / raw_per_s
    # CPU per event moves less than the rate with what else the 2 cores run (the broker, the
    # bench itself); the worker's counts both its threads, the raw one this whole process.
    cpu_us = 1e6 * (e2e.cpu_done - e2e.cpu_first) / max(timed, 1)
    busy = (e2e.cpu_done - e2e.cpu_first) / max(e2e.t_done - e2e.t_first, 1e-6)
    say(f"end-to-end   {events_per_s:10,.0f} ev/s    = {ratio:.3f} x raw ({raw_per_s:,.0f} ev/s);"
        f" worker up in {e2e.start_s:.1f} s; timed over the last {timed:,.0f} events")  # fmt: skip
    say(f"             outcomes {dict(sorted(e2e.outcomes.items()))}; /metrics polled "
        f"{e2e.polls}x, {1000 * e2e.poll_s / max(1, e2e.polls):.1f} ms each, every "
        f"{(e2e.t_done - worker.started) / max(1, e2e.polls):.2f} s")  # fmt: skip
    say(f"worker CPU   {cpu_us:10.1f} us/ev  = {cpu_us / max(1e6 * raw_cpu, 1e-9):.1f} x raw"
        f" ({1e6 * raw_cpu:.1f} us/ev); {busy:.2f} cores busy")  # fmt: skip
    if e2e.within_one_poll:
        say(
            "             (all events folded between two polls: timed from the poll before "
            "the first event; the rate is a lower bound: use more --events)"
        )

    scores = _consumer(bootstrap)
    try:
        await scores.start()
        scores.assign([TopicPartition(topics.SCORES, p) for p in range(settings.partitions)])
        n_scores, max_ts = await read_until_idle(scores, IDLE_S, 120.0)
        for _ in range(6):  # a busy emitter may not have written anything yet
            if n_scores:
                break
            n_scores, max_ts = await read_until_idle(scores, IDLE_S, 120.0)
        if not n_scores:
            raise BenchError("no cx.scores record after the input was folded")
        drain_s = max(0.0, max_ts / 1000 - e2e.done_wall)
        say(f"drain        {drain_s:10.2f} s       after the last input was counted "
            f"({n_scores:,} cx.scores records; emit interval {settings.emit_interval:g} s)")  # fmt: skip

        # Phase 1's event times end minutes ago: the first live answer moves every window of
        # every survey member at once. Let that one-off burst pass before measuring.
        window = _latency_window(settings, args.latency_seconds)
        t0 = time.monotonic()
        await produce(bootstrap, [latency_message(i, "warmup", "bench-warmup") for i in range(50)])
        warm_key = f"nps|{window}|segment=bench-warmup".encode()
        n_warm = await wait_for_n(scores, warm_key, 50, 120.0)
        n_warm += (await read_until_idle(scores, IDLE_S, 120.0))[0]
        say(f"warm-up      {time.monotonic() - t0 - IDLE_S:10.2f} s       for the watermark jump "
            f"to now ({n_warm:,} cx.scores records)")  # fmt: skip

        key = f"nps|{window}|segment={LATENCY_SEGMENT}".encode()
        survey = {tp: pos for tp, pos in positions.items() if tp.topic == topics.SURVEY_RESPONSES}
        lat = await steady_latency(bootstrap, scores, survey, key, args.latency_rate,
                                   args.latency_seconds, worker.check)  # fmt: skip
    finally:
        await scores.stop()
    p50, p99 = percentile(lat.e2e_ms, 0.5), percentile(lat.e2e_ms, 0.99)
    raw_p50, raw_p99 = percentile(lat.raw_ms, 0.5), percentile(lat.raw_ms, 0.99)
    say(f"latency      p50 {p50:7.1f} ms  p99 {p99:7.1f} ms   (raw read-back p50 {raw_p50:.1f}"
        f" ms, p99 {raw_p99:.1f} ms; {len(lat.sent)} answers at {args.latency_rate:g}/s,"
        f" key {key.decode()})")  # fmt: skip
    by_quarter = _p50_by_quarter(lat.e2e_ms)
    raw_by_quarter = _p50_by_quarter([x for x in lat.raw_ms if not math.isnan(x)])
    say("             p50 by quarter of the phase: "
        + ", ".join(f"{x:.0f}" for x in by_quarter) + " ms (raw read-back: "
        + ", ".join(f"{x:.0f}" for x in raw_by_quarter) + " ms; growing = backlog, or a"
        " slower broker when the raw read-back grows too)")  # fmt: skip
    mem = worker.memory_mb()
    worker.check()
    peak, rss_end = mem.get("VmHWM", 0.0), mem.get("VmRSS", 0.0)
    say(f"worker RSS   peak {peak:.0f} MB  (start {e2e.rss_start_mb:.0f} MB, end {rss_end:.0f} MB)")

    result = {
        "events": args.events,
        "produced": produced,
        "duplicates": workload.duplicates,
        "late": workload.late,
        "events_timed": int(timed),
        "events_per_s": round(events_per_s, 1),
        "raw_events_per_s": round(raw_per_s, 1),
        "ratio": round(ratio, 4),
        "cpu_us_per_event": round(cpu_us, 2),
        "within_one_poll": e2e.within_one_poll,
        "raw_cpu_us_per_event": round(1e6 * raw_cpu, 2),
        "worker_cores_busy": round(busy, 3),
        "produce_per_s": round(produce_per_s, 1),
        "drain_s": round(drain_s, 3),
        "p50_latency_ms": round(p50, 1),
        "p99_latency_ms": round(p99, 1),
        "raw_p50_latency_ms": round(raw_p50, 1),
        "raw_p99_latency_ms": round(raw_p99, 1),
        "p50_by_quarter_ms": [round(x, 1) for x in by_quarter],
        "raw_p50_by_quarter_ms": [round(x, 1) for x in raw_by_quarter],
        "latency_events": len(lat.sent),
        "peak_rss_mb": round(peak, 1),
        "rss_start_mb": round(e2e.rss_start_mb, 1),
        "rss_end_mb": round(rss_end, 1),
        "worker_start_s": round(e2e.start_s, 2),
        "metrics_poll_ms": round(1000 * e2e.poll_s / max(1, e2e.polls), 2),
        "emit_interval_s": settings.emit_interval,
        "partitions": settings.partitions,
        "batch_delivery": settings.batch_delivery,
        "python": platform.python_version(),
        "faust": importlib.metadata.version("faust-streaming"),
    }
    return result


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``cxpulse bench``: 0 on success, 1 (with the log tails) when a phase fails."""
    keep = args.keep_logs is not None
    workdir = Path(args.keep_logs or tempfile.mkdtemp(prefix="cxpulse-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(log_path=workdir / "tansu.log")
    spawned: list[WorkerProc] = []
    code = 1
    try:
        broker.start()
        settings = settings.replace(
            broker=broker.url, app_id=f"cx-bench-{uuid.uuid4().hex[:8]}", web_port=free_port(),
            data_dir=str(workdir / "worker-data"), emit_interval=args.emit_interval,
        )  # fmt: skip
        result = asyncio.run(_bench(settings, args, workdir, spawned))
        line = orjson.dumps(result).decode()
        if args.out:
            Path(args.out).write_text(line + "\n")
        if args.json:
            print(line, flush=True)
        code = 0
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        for w in spawned:
            print(f"--- worker log ({w.log_path}) ---\n{w.log_tail()}", file=sys.stderr)
        print(f"--- broker log ---\n{broker.log_tail(2000)}", file=sys.stderr)
    finally:
        for w in spawned:
            w.stop()
        broker.stop()
        if keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code
