"""The ``cxpulse`` command. Every option is also a ``CX_<NAME>`` environment variable."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from streams.gcpolicy import FREEZE_S, GcPolicy
from streams.settings import Settings, from_env, parse_bool

# option name -> (type, help); each maps to Settings.<name> and CX_<NAME>
_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "broker": (str, "Kafka URL, kafka://host:port (CX_BROKER)"),
    "web_port": (int, "port of /metrics (CX_WEB_PORT)"),
    "data_dir": (str, "state directory (CX_DATA_DIR)"),
    "app_id": (str, "consumer group / app id (CX_APP_ID)"),
    "store": (str, "table store, memory:// or rocksdb:// (CX_STORE)"),
    "partitions": (int, "partitions of every topic (CX_PARTITIONS)"),
    "min_sample": (int, "minimum n for a non-null score (CX_MIN_SAMPLE)"),
    "windows": (str, "comma-separated windows, e.g. 5m,1h,24h (CX_WINDOWS)"),
    "dimensions": (str, "comma-separated dimensions, pairs as a+b (CX_DIMENSIONS)"),
    "max_members": (int, "members tracked per dimension (CX_MAX_MEMBERS)"),
    "emit_interval": (float, "seconds between score records of one key (CX_EMIT_INTERVAL)"),
    "session_timeout": (float, "consumer session timeout, s (CX_SESSION_TIMEOUT)"),
    "loglevel": (str, "worker log level (CX_LOGLEVEL)"),
    "max_agent_crashes": (
        int,
        "stop the worker (exit 3) after this many crashes of one agent within"
        " --agent-crash-window; 0: never (CX_MAX_AGENT_CRASHES)",
    ),
    "agent_crash_window": (float, "seconds, see --max-agent-crashes (CX_AGENT_CRASH_WINDOW)"),
    "gc_full_interval": (
        float,
        "seconds between two full collections of the cyclic GC, which pause the worker"
        " (CX_GC_FULL_INTERVAL)",
    ),
    "batch_delivery": (
        parse_bool,
        "batch delivery to the agents, on by default; 0: Faust's per-record path"
        " (CX_BATCH_DELIVERY)",
    ),
}


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    for name, (kind, help_text) in _OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=help_text)


def settings_from(args: argparse.Namespace) -> Settings:
    return from_env(**{name: getattr(args, name, None) for name in _OPTIONS})


def _run(coro_factory: object) -> object:
    """Run a coroutine on a loop of its own. Ctrl-C cancels it inside the loop (its clean-up,
    e.g. stopping a producer, runs), then raises KeyboardInterrupt (``asyncio.Runner``)."""
    try:
        with asyncio.Runner() as runner:
            return runner.run(coro_factory)  # type: ignore[arg-type]
    finally:
        asyncio.set_event_loop(asyncio.new_event_loop())


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams.topics import create_topics, topic_specs

    created = _run(create_topics(settings.bootstrap, topic_specs(settings)))
    print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")  # type: ignore[arg-type]
    return 0


def _gc_tick(policy: GcPolicy) -> Callable[[], Any]:
    async def gc_freeze() -> None:
        policy.tick()

    return gc_freeze


M_ARENA_MAX = -8  # glibc's malloc.h
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``, what ``MALLOC_ARENA_MAX`` sets),
    unless the environment set it: True when applied.

    glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed
    in an arena other than the main heap is rarely handed back to the system. The worker has
    Faust's consumer thread and asyncio's resolver threads besides the main one; a replay's
    transient peaks (a batch of records in flight, +100-150 MB for a second) then stayed in
    RSS for good: tests/integration/test_memory.py saw the steady RSS step up to the peak in
    about 1 run of 3 (CI 2026-12-03: +3.9 MB per 10k events), never with 2 arenas (5 runs:
    the peaks came back down). Called before the worker starts any thread. Not glibc (musl,
    macOS): no ``mallopt`` or a 0 result, nothing changes."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_ARENA_MAX, arenas))


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    limit_malloc_arenas()  # first: before any thread allocates
    from faust.worker import Worker

    from streams.app import create_app
    from streams.supervision import EXIT_AGENT_CRASHES
    from streams.topics import create_topics, topic_specs

    _run(create_topics(settings.bootstrap, topic_specs(settings)))
    app = create_app(settings)
    worker = Worker(app, loglevel=settings.loglevel, quiet=True)
    # Faust's startup spinner sets the root logger to DEBUG and never restores it, so every
    # debug call in aiokafka/faust builds a record (~10% of a busy worker's CPU).
    worker.spinner = None
    # The cyclic GC scanned the live state over and over (streams/gcpolicy.py): it is frozen
    # out of the scans now, every FREEZE_S, with a full collection every gc_full_interval.
    policy = GcPolicy(settings.gc_full_interval)
    policy.start()
    app.timer(FREEZE_S, name="gc-freeze")(_gc_tick(policy))
    try:
        worker.execute_from_commandline()  # SIGTERM/SIGINT: flush, commit, leave the group
    except SystemExit as done:
        crashes = app.cx_context.crashes  # type: ignore[attr-defined]
        if crashes.gave_up is not None and not done.code:
            print(f"cxpulse worker: {crashes.gave_up}", file=sys.stderr, flush=True)
            return EXIT_AGENT_CRASHES
        raise
    return 0


def cmd_broker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.broker import run_foreground

    return run_foreground(settings)


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from streams.generate import SCENARIOS, run_generator

    scenario = replace(SCENARIOS[args.scenario], seed=args.seed)
    try:
        count = _run(run_generator(settings, scenario, args.count, args.rate, args.realtime))
    except KeyboardInterrupt:  # Ctrl-C ends an endless run (`--count 0`, the demo's): no traceback
        return 130
    print(f"produced {count} messages ({scenario.name}, seed {scenario.seed})")
    return 0


def cmd_scores(settings: Settings, args: argparse.Namespace) -> int:
    from streams.scores_view import format_table, latest_scores, watch

    if args.watch and args.interval <= 0:
        print("--interval must be positive", file=sys.stderr)
        return 2
    if args.watch:
        # One consumer for the whole run; Ctrl-C (SIGINT) stops the loop and closes it.
        _run(watch(settings.bootstrap, interval=args.interval, window=args.window,
                   dimension=args.dimension, metric=args.metric))  # fmt: skip
        print()
        return 0
    records = _run(latest_scores(settings.bootstrap, idle_s=args.idle))
    print(
        format_table(records, window=args.window, dimension=args.dimension, metric=args.metric)  # type: ignore[arg-type]
    )
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Broker + topics + worker + live generator with a detractor spike, until Ctrl-C."""
    from streams.broker import EmbeddedBroker, _host_port

    host, port = _host_port(settings)
    os.makedirs(settings.data_dir, exist_ok=True)
    broker = EmbeddedBroker(port, host=host, log_path=os.path.join(settings.data_dir, "tansu.log"))
    env = {
        **os.environ,
        "CX_BROKER": settings.broker,
        "CX_WEB_PORT": str(settings.web_port),
        "CX_DATA_DIR": settings.data_dir,
        "CX_MIN_SAMPLE": str(settings.min_sample),
    }
    procs: list[subprocess.Popen[bytes]] = []
    with broker:
        cmd_topics(settings, args)
        cli = [sys.executable, "-m", "streams.cli"]
        worker_log = open(os.path.join(settings.data_dir, "worker.log"), "ab")  # noqa: SIM115
        procs.append(
            subprocess.Popen([*cli, "worker"], env=env, stdout=worker_log, stderr=subprocess.STDOUT)
        )
        procs.append(
            subprocess.Popen(
                [
                    *cli,
                    "generate",
                    "--scenario",
                    "demo",
                    "--realtime",
                    "--rate",
                    str(args.rate),
                    "--count",
                    "0",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )
        print(
            f"CX Pulse demo running: broker {settings.broker}\n"
            f"  live:     http://127.0.0.1:{settings.web_port}/  (scores, CI bands, alerts)\n"
            f"  metrics:  http://127.0.0.1:{settings.web_port}/metrics  (cx_score series)\n"
            f"  scores:   CX_BROKER={settings.broker} .venv/bin/cxpulse scores --window 1h\n"
            f"  logs:     {settings.data_dir}/worker.log, {settings.data_dir}/tansu.log\n"
            f"  a detractor spike in segment=enterprise starts ~20 s in. Ctrl-C stops.",
            flush=True,
        )
        deadline = time.monotonic() + args.duration if args.duration else None
        try:
            while deadline is None or time.monotonic() < deadline:
                if any(p.poll() is not None for p in procs):
                    print("a demo process exited; see the logs", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
            worker_log.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxpulse", description="CX Pulse: real-time CX scores")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        _add_settings_options(p)
        return p

    add("broker", "run the embedded Tansu broker in the foreground").set_defaults(fn=cmd_broker)
    add("worker", "run a worker (creates the topics first)").set_defaults(fn=cmd_worker)
    topics = sub.add_parser("topics", help="topic administration")
    tsub = topics.add_subparsers(dest="topics_command", required=True)
    create = tsub.add_parser("create", help="create every topic with its configs")
    _add_settings_options(create)
    create.set_defaults(fn=cmd_topics)

    gen = add("generate", "produce synthetic traffic")
    from streams.generate import SCENARIOS

    gen.add_argument("--scenario", default="steady", choices=sorted(SCENARIOS))
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--count", type=int, default=10_000, help="messages; 0 = forever (realtime)")
    gen.add_argument("--rate", type=float, default=200.0, help="messages per second of event time")
    gen.add_argument("--realtime", action="store_true", help="event times follow the wall clock")
    gen.set_defaults(fn=cmd_generate)

    scores = add("scores", "print the current scores")
    scores.add_argument("--window", default=None)
    scores.add_argument("--dimension", default=None)
    scores.add_argument("--metric", default=None)
    scores.add_argument("--idle", type=float, default=2.0, help="stop reading after idle seconds")
    scores.add_argument("--watch", action="store_true", help="redraw in place until Ctrl-C")
    scores.add_argument("--interval", type=float, default=2.0, help="--watch refresh, seconds")
    scores.set_defaults(fn=cmd_scores)

    from streams import bench, replay

    _add_settings_options(replay.add_parser(sub))
    bench.add_parser(sub)

    demo = add("demo", "embedded broker + worker + generator with a detractor spike")
    demo.add_argument("--rate", type=float, default=100.0)
    demo.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    demo.set_defaults(fn=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    return int(args.fn(settings, args))


if __name__ == "__main__":
    sys.exit(main())
