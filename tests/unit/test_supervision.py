"""Agent crashes (streams/supervision.py): counted per agent, the worker stopped when one agent
crashed ``max_crashes`` times within the window, and Faust's crash path still goes through the
handler that :func:`supervise` chains (a faust-streaming upgrade that changes it fails here).

The whole path against a real broker: tests/integration/test_agent_crashes.py."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from streams.supervision import CrashPolicy, supervise
from streams.telemetry import Telemetry


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy(max_crashes: int = 3, window_s: float = 300.0) -> tuple[CrashPolicy, Any, list[int]]:
    registry = CollectorRegistry()
    tel = Telemetry.create(registry)
    clock, stops = _Clock(), []
    policy = CrashPolicy(tel.agent_crashes, max_crashes, window_s, clock=clock,
                         stop=lambda: stops.append(1))  # fmt: skip
    return policy, (registry, clock), stops


def _count(registry: CollectorRegistry, agent: str) -> float | None:
    return registry.get_sample_value("cx_agent_crashes_total", {"agent": agent})


def test_the_worker_stops_once_at_max_crashes_of_one_agent_within_the_window() -> None:
    policy, (registry, clock), stops = _policy()
    for dt in (0, 100, 100):  # 3 crashes within 200 s
        clock.now += dt
        assert not stops
        policy.crashed("fold-surveys", RuntimeError("boom"))
    assert stops == [1]
    assert policy.gave_up is not None and "fold-surveys crashed 3 times" in policy.gave_up
    policy.crashed("fold-surveys", RuntimeError("again"))  # while stopping: counted, no 2nd stop
    assert stops == [1] and _count(registry, "fold-surveys") == 4


def test_crashes_spread_beyond_the_window_or_over_agents_do_not_stop_it() -> None:
    policy, (registry, clock), stops = _policy(max_crashes=3, window_s=300)
    for _ in range(6):
        policy.crashed("fold-surveys", RuntimeError("transient"))
        clock.now += 151  # never 3 within 300 s
    policy.crashed("fold-support", RuntimeError("x"))
    policy.crashed("merge", RuntimeError("y"))  # 3 crashes in a row, but of 3 agents
    assert stops == [] and policy.gave_up is None
    assert _count(registry, "fold-surveys") == 6 and _count(registry, "merge") == 1


def test_max_crashes_0_never_stops() -> None:
    policy, (registry, _clock), stops = _policy(max_crashes=0)
    for _ in range(50):
        policy.crashed("merge", RuntimeError("x"))
    assert stops == [] and _count(registry, "merge") == 50


class _Ref:
    def __init__(self) -> None:
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


async def test_faust_calls_the_chained_handler_then_its_own_when_an_actor_raises() -> None:
    app = faust.App("supervision-test", broker="kafka://127.0.0.1:1")  # never connected
    topic = app.topic("t", value_serializer="raw")

    async def fun(stream: Any) -> None:  # pragma: no cover - the actor below raises instead
        async for _ in stream:
            pass

    agent = app.agent(topic, name="a")(fun)
    faust_handler = agent._on_error  # type: ignore[attr-defined]
    assert faust_handler is not None, "App.agent no longer sets its own on_error"
    seen: list[str] = []

    async def app_handler(crashed: Any, exc: BaseException) -> None:
        seen.append(f"app {crashed.name} {exc}")

    agent._on_error = app_handler  # type: ignore[attr-defined]  # stands for Faust's
    policy, (registry, _clock), stops = _policy(max_crashes=1)
    supervise(agent, policy)

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("bug")

    ref, wakeups = _Ref(), []
    agent.supervisor = type("_Supervisor", (), {"wakeup": lambda self: wakeups.append(1)})()
    await agent._execute_actor(failing(), ref)  # type: ignore[attr-defined,arg-type]
    assert _count(registry, "a") == 1 and stops == [1]
    assert seen == ["app a bug"]  # Faust's own handler (commit acked offsets) still runs
    assert [str(e) for e in ref.crashed] == ["bug"] and wakeups == [1]  # restarted next


def test_the_workers_agents_are_all_supervised() -> None:
    from streams.app import create_app
    from streams.settings import Settings
    from streams.topics import TABLES

    registry = CollectorRegistry()
    app = create_app(Settings(), registry)
    names = set(app.agents)
    assert names == set(TABLES)  # the four fold agents and merge
    assert {n: _count(registry, n) for n in names} == dict.fromkeys(names, 0.0)  # from the start
    for agent in app.agents.values():
        handler = agent._on_error  # type: ignore[attr-defined]
        assert handler.__qualname__ == "supervise.<locals>.on_error", agent.name
