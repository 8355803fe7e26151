"""What happens when an agent crashes: count it, log it, and stop the worker when it repeats.

Faust restarts a crashed agent (mode's ``OneForOneSupervisor``), and the new actor goes on from
the batch it was given again (its records were not acked; ``streams/agents/gaps.py`` reads a
hole from the broker). That is the right answer to a transient fault, a send that timed out
while the broker restarted. A fault that every retry hits again, a bug, made that a silent
loop: the 2**20 dedupe bug of 2026-12-04 (CHANGELOG) crashed stage 1 on every restart for
as long as the worker ran, its RSS grew to 2.9 GB, and nothing but the log said so: the
process was up, ``/metrics`` answered, only the scores stood still.

Now every crash counts in ``cx_agent_crashes_total{agent}`` (the ``CxPulseAgentCrashes`` rule
in deploy/prometheus/rules pages on it) and is logged with its traceback, and when one agent
crashed ``max_agent_crashes`` times within ``agent_crash_window`` seconds the worker stops the
way SIGTERM stops it (flush, commit what was acked, leave the group: its partitions move on at
once) and exits with :data:`EXIT_AGENT_CRASHES`, for the process supervisor (Kubernetes,
Compose's ``restart:``) to restart it and show the restarts. Stopping is exact: a batch is
acked only after its commit returned (streams/delivery.py), so the failed one is read again
by whichever worker owns its partition next, like after a SIGKILL (docs/crash-safety.md).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from faust.types import AgentT
from prometheus_client import Counter

from streams import delivery

log = logging.getLogger(__name__)

EXIT_AGENT_CRASHES = 3  # the exit status of a worker that gave up (1: faust's own errors)


STOP_DEADLINE_S = 60.0  # a graceful stop that takes longer ends in os._exit


def _stop_like_sigterm() -> None:
    """SIGTERM to ourselves: the worker's own handler stops it gracefully. Should that stop
    hang (it once did: ``Consumer.wait_empty``, see :func:`supervise`), the process exits
    anyway after :data:`STOP_DEADLINE_S`, like a SIGKILL, which the design is exact under."""

    def _exit() -> None:
        print(f"cxpulse worker: not stopped after {STOP_DEADLINE_S:g}s, exiting",
              file=sys.stderr, flush=True)  # fmt: skip
        os._exit(EXIT_AGENT_CRASHES)

    timer = threading.Timer(STOP_DEADLINE_S, _exit)
    timer.daemon = True
    timer.start()
    os.kill(os.getpid(), signal.SIGTERM)


class CrashPolicy:
    """What every agent does when it crashed (:func:`supervise`)."""

    def __init__(
        self,
        crashes: Counter,
        max_crashes: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        stop: Callable[[], None] = _stop_like_sigterm,
    ) -> None:
        self.crashes = crashes
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.clock = clock
        self.stop = stop
        self.recent: dict[str, deque[float]] = {}
        self.gave_up: str | None = None  # why, once the worker was told to stop

    def crashed(self, name: str, exc: BaseException) -> None:
        self.crashes.labels(name).inc()
        now = self.clock()
        times = self.recent.setdefault(name, deque())
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        log.error(
            "agent %s crashed (%d time(s) in the last %gs, the worker stops at %d): %r",
            name, len(times), self.window_s, self.max_crashes, exc, exc_info=exc,
        )  # fmt: skip
        if self.max_crashes > 0 and len(times) >= self.max_crashes and self.gave_up is None:
            self.gave_up = (
                f"agent {name} crashed {len(times)} times within {self.window_s:g}s, last: {exc!r}"
            )
            log.critical("%s: stopping the worker (exit status %d)", self.gave_up,
                         EXIT_AGENT_CRASHES)  # fmt: skip
            self.stop()


def supervise(agent: AgentT, policy: CrashPolicy) -> AgentT:
    """Make ``policy`` see the crashes of ``agent``.

    Faust calls an agent's ``_on_error`` with every exception its actor raised, before it marks
    the actor dead for the supervisor to restart (``Agent._execute_actor``). ``App.agent`` sets
    it to the app's own handler (``App._on_agent_error``: commit the acked offsets) and takes no
    other, so ``policy`` is chained in front of that one. ``tests/unit/test_supervision.py``
    fails if a faust-streaming upgrade changes this path."""
    app_handler = agent._on_error  # type: ignore[attr-defined]
    # exported at 0 from the start: increase() over a series that first appears at 1 (a
    # worker's first crash after a restart) is 0, and CxPulseAgentCrashes would miss it
    policy.crashes.labels(str(agent.name))

    async def on_error(crashed: AgentT, exc: BaseException) -> None:
        # the batch it crashed on will be read again; without this a stop waits for it forever
        n = delivery.abandon(crashed.app, getattr(crashed.channel, "topics", ()))
        log.warning("agent %s: the %d records of the batch it crashed on will be read again",
                    crashed.name, n)  # fmt: skip
        policy.crashed(str(crashed.name), exc)
        if app_handler is not None:
            await app_handler(crashed, exc)

    agent._on_error = on_error  # type: ignore[attr-defined]
    return agent
