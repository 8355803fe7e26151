"""streams.agents.expiry: every 30 s of wall time, and every retention / 8 of event time."""

from __future__ import annotations

import pytest

from streams.agents import expiry
from streams.agents.expiry import ExpirySchedule


def test_event_time_triggers_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expiry.time, "monotonic", lambda: 100.0)
    s = ExpirySchedule(retention_s=8_000)  # a step of 1,000 s of event time
    assert s.step_ms == 1_000_000
    assert not s.due(0, 5_000_000, wall_due=False)  # first sight: the start
    assert not s.due(0, 5_999_999, wall_due=False)
    assert s.due(0, 6_000_000, wall_due=False)
    assert not s.due(0, 6_500_000, wall_due=False)  # counted from the last expiry
    assert not s.due(1, 6_500_000, wall_due=False)  # keys are independent
    assert s.due(1, 6_500_000, wall_due=True)  # wall time: every key
    assert not s.due(2, None, wall_due=False)
    assert s.due(2, None, wall_due=True)  # no watermark yet: wall time alone decides


def test_wall_time_triggers_every_30_s(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000.0]
    monkeypatch.setattr(expiry.time, "monotonic", lambda: now[0])
    s = ExpirySchedule(retention_s=3_600)
    now[0] += 30.0
    assert not s.wall_due()
    now[0] += 0.5
    assert s.wall_due()
    assert not s.wall_due()  # answered yes: the clock restarts
    now[0] += 31
    assert s.wall_due()
