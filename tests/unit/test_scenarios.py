"""Each rehearsal scenario moves its metric in its segment during its window, and only there."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from streams.generate import SCENARIOS, generate

T0 = 1_790_000_000_000


def _split(name: str) -> tuple[list[dict], list[dict], object]:
    sc = SCENARIOS[name]
    spike = sc.spike(T0)
    assert spike is not None
    inside, outside = [], []
    for topic, _k, v in generate(sc.seed, 30_000, T0, rate_per_s=5, spike=spike):
        d = orjson.loads(v)
        d["_topic"] = topic
        t = d.get("occurred_at")
        if d.get("segment") != spike.segment or t is None:
            continue
        from streams.events import parse_time

        ms = parse_time(t)
        assert ms is not None
        (inside if spike.start_ms <= ms < spike.end_ms else outside).append(d)
    return inside, outside, spike


def _share(rows: list[dict], pred) -> float:  # type: ignore[no-untyped-def]
    return sum(1 for r in rows if pred(r)) / max(1, len(rows))


@pytest.mark.parametrize("name", ["detractor-spike", "nps-drop"])
def test_nps_scenarios_lower_nps_in_the_window(name: str) -> None:
    inside, outside, _ = _split(name)
    nps_in = [r for r in inside if r["_topic"] == "cx.survey-responses" and r["survey"] == "nps"]
    nps_out = [r for r in outside if r["_topic"] == "cx.survey-responses" and r["survey"] == "nps"]
    det_in, det_out = (_share(x, lambda r: r["score"] <= 6) for x in (nps_in, nps_out))
    pro_in, pro_out = (_share(x, lambda r: r["score"] >= 9) for x in (nps_in, nps_out))
    assert len(nps_in) > 30
    assert pro_in - det_in < pro_out - det_out - 0.2  # NPS at least 20 points lower


def test_churn_spike_multiplies_cancellations() -> None:
    inside, outside, spike = _split("churn-spike")
    hours_out = (30_000 / 5 - 3600) / 3600
    per_hour_in = Counter(r["_topic"] for r in inside)["cx.cancellations"]
    per_hour_out = Counter(r["_topic"] for r in outside)["cx.cancellations"] / hours_out
    assert per_hour_in > 5 * max(per_hour_out, 1)


def test_slow_support_slows_first_responses() -> None:
    from streams.events import parse_time

    inside, outside, _ = _split("slow-support")

    def frt(rows: list[dict]) -> list[float]:
        out = []
        for r in rows:
            if r["_topic"] == "cx.support-interactions" and r["status"] == "responded":
                out.append((parse_time(r["occurred_at"]) or 0) - (parse_time(r["opened_at"]) or 0))
        return sorted(out)

    fast, slow = frt(outside), frt(inside)
    assert len(slow) > 10
    assert slow[len(slow) // 2] > 4 * fast[len(fast) // 2]
