"""The synthetic traffic generator: deterministic, realistic, and valid per the decoder."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest

from streams import topics
from streams.events import Rejection, decode
from streams.generate import (
    SCENARIOS,
    SEGMENTS,
    Scenario,
    Spike,
    generate,
    generate_timed,
    rfc3339,
)

START_MS = 1_795_000_000_000  # 2026-11-18T11:06:40Z
SPIKE = Spike("enterprise", START_MS + 60_000, START_MS + 260_000)


@pytest.fixture(scope="module")
def timed() -> list[tuple[int, str, bytes, bytes]]:
    return list(generate_timed(5, 20_000, START_MS, customers=400, spike=SPIKE))


@pytest.fixture(scope="module")
def events(timed: list[tuple[int, str, bytes, bytes]]) -> list[tuple[int, str, dict[str, Any]]]:
    return [(t, topic, orjson.loads(value)) for t, topic, _key, value in timed]


def _of(events: list[tuple[int, str, dict[str, Any]]], topic: str) -> list[dict[str, Any]]:
    return [value for _t, name, value in events if name == topic]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = list(generate(42, 3000, START_MS, customers=100))
    assert first == list(generate(42, 3000, START_MS, customers=100))
    assert first != list(generate(43, 3000, START_MS, customers=100))


def test_a_longer_run_extends_a_shorter_one() -> None:
    short = list(generate(1, 500, START_MS, customers=50))
    assert list(generate(1, 900, START_MS, customers=50))[:550] == short


def test_counts_topics_and_keys(timed: list[tuple[int, str, bytes, bytes]]) -> None:
    assert len(timed) == 400 + 20_000
    by_topic = Counter(topic for _t, topic, _k, _v in timed)
    assert set(by_topic) == set(topics.INPUTS)
    surveys = by_topic[topics.SURVEY_RESPONSES] / 20_000
    assert 0.6 < surveys < 0.9  # ~70% in steady state; long support tails make short runs higher
    for _t, _topic, key, value in timed:
        assert key == orjson.loads(value)["customer_id"].encode()


def test_event_time_order_and_rate(timed: list[tuple[int, str, bytes, bytes]]) -> None:
    times = [t for t, *_ in timed]
    assert times == sorted(times)
    assert times[0] == START_MS
    rate = 20_000 / ((times[-1] - START_MS) / 1000)
    assert 30 < rate < 60  # ~50/s by default


def test_every_event_decodes(timed: list[tuple[int, str, bytes, bytes]]) -> None:
    now_ms = timed[-1][0]
    rejected: Counter[str] = Counter()
    for _t, topic, _key, value in timed:
        result = decode(topic, value, now_ms)
        if isinstance(result, Rejection):
            rejected[result.reason] += 1
    assert rejected == Counter()


def test_both_time_formats_appear(events: list[tuple[int, str, dict[str, Any]]]) -> None:
    kinds = Counter(
        type(value["occurred_at"]) for _t, _n, value in events if "occurred_at" in value
    )
    assert kinds[str] > kinds[int] > 0
    offsets = [
        v["occurred_at"] for _t, _n, v in events if str(v.get("occurred_at")).endswith(":00")
    ]
    assert offsets, "some RFC 3339 times carry a regional offset"


def test_event_ids_are_unique(events: list[tuple[int, str, dict[str, Any]]]) -> None:
    for topic, field in (
        (topics.SURVEY_RESPONSES, "response_id"),
        (topics.SUPPORT_INTERACTIONS, "event_id"),
        (topics.CANCELLATIONS, "cancellation_id"),
    ):
        ids = [value[field] for value in _of(events, topic)]
        assert len(ids) == len(set(ids)), topic
    opened = [v["interaction_id"] for v in _of(events, topics.SUPPORT_INTERACTIONS)
              if v["status"] == "opened"]  # fmt: skip
    assert len(opened) == len(set(opened))


def test_different_start_gives_different_ids() -> None:
    def ids(start: int) -> set[bytes]:
        return {v for t, _k, v in generate(1, 200, start, customers=10) if t != topics.CUSTOMERS}

    assert not ids(START_MS) & ids(START_MS + 1)


def test_ticket_lifecycles() -> None:
    # A longer run (~40 min of event time): reopens come an hour or so after the opening.
    support = [orjson.loads(v) for t, _k, v in generate(4, 100_000, START_MS, customers=300)
               if t == topics.SUPPORT_INTERACTIONS]  # fmt: skip
    opened_at: dict[str, Any] = {}
    statuses: dict[str, list[str]] = defaultdict(list)
    for value in support:
        iid = value["interaction_id"]
        statuses[iid].append(value["status"])
        if value["status"] == "opened":
            opened_at[iid] = value["occurred_at"]
            assert "opened_at" not in value
        else:
            assert value["opened_at"] == opened_at[iid]  # opened came first, same format
    seen = Counter(s for lifecycle in statuses.values() for s in lifecycle)
    assert seen["opened"] > seen["responded"] > seen["resolved"] > seen["reopened"] > 0
    for lifecycle in statuses.values():
        assert (
            lifecycle
            == ["opened", "responded", "resolved", "reopened", "resolved"][: len(lifecycle)]
        )
    priorities = {v["priority"] for v in support}
    assert priorities == {"low", "normal", "high", "urgent"}


def test_surveys_look_real(events: list[tuple[int, str, dict[str, Any]]]) -> None:
    surveys = _of(events, topics.SURVEY_RESPONSES)
    assert Counter(v["survey"] for v in surveys).keys() == {"nps", "csat", "ces"}
    for dim, values in (
        ("segment", {"enterprise", "mid-market", "smb", "consumer"}),
        ("channel", {"chat", "email", "phone", "web", "in-app"}),
        ("touchpoint", {"onboarding", "support", "billing", "product", "renewal"}),
        ("region", {"na", "emea", "apac", "latam"}),
        ("plan", {"free", "pro", "business", "enterprise"}),
    ):
        assert {v[dim] for v in surveys if dim in v} == values, dim
    comments = sum("comment" in v for v in surveys) / len(surveys)
    assert 0.08 < comments < 0.25
    assert any(v.get("scale_max") == 10 for v in surveys if v["survey"] == "csat")


def _nps(values: list[dict[str, Any]]) -> float:
    promoters = sum(v["score"] >= 9 for v in values)
    detractors = sum(v["score"] <= 6 for v in values)
    return 100 * (promoters - detractors) / len(values)


def test_nps_differs_by_segment_as_configured() -> None:
    values = [orjson.loads(v) for t, _k, v in generate(9, 40_000, START_MS, customers=500)
              if t == topics.SURVEY_RESPONSES]  # fmt: skip
    nps = {s: _nps([v for v in values if v["survey"] == "nps" and v["segment"] == s])
           for s in SEGMENTS}  # fmt: skip
    assert 25 < nps["enterprise"] < 45
    assert nps["enterprise"] > nps["mid-market"] > nps["smb"] > nps["consumer"]


def test_spike_raises_the_segment_detractor_share(
    events: list[tuple[int, str, dict[str, Any]]],
) -> None:
    shares: dict[tuple[str, bool], list[bool]] = defaultdict(list)
    for t, topic, value in events:
        if topic == topics.SURVEY_RESPONSES and value["survey"] == "nps":
            inside = SPIKE.start_ms <= t < SPIKE.end_ms
            shares[value["segment"], inside].append(value["score"] <= 6)

    def share(key: tuple[str, bool]) -> float:
        assert len(shares[key]) >= 100, key
        return sum(shares[key]) / len(shares[key])

    assert share(("enterprise", True)) > 0.6
    assert share(("enterprise", False)) < 0.3
    assert abs(share(("smb", True)) - share(("smb", False))) < 0.1  # other segments unaffected


def test_spike_can_target_one_channel() -> None:
    spike = Spike("smb", START_MS, START_MS + 10**9, channel="chat", detractor_share=1.0)
    for topic, _k, raw in generate(2, 3000, START_MS, customers=100, spike=spike):
        value = orjson.loads(raw)
        if topic == topics.SURVEY_RESPONSES and value["survey"] == "nps":
            hit = value["segment"] == "smb" and value["channel"] == "chat"
            assert not hit or value["score"] <= 6


def test_cancellations_update_the_customer_base(
    timed: list[tuple[int, str, bytes, bytes]],
) -> None:
    base = [orjson.loads(v) for _t, topic, _k, v in timed[:400]]
    assert {v["status"] for v in base} == {"active"} and len(base) == 400
    for i, (_t, topic, key, raw) in enumerate(timed):
        if topic == topics.CANCELLATIONS:
            follow = timed[i + 1]
            assert follow[1] == topics.CUSTOMERS and follow[2] == key
            assert orjson.loads(follow[3])["status"] == "cancelled"
            assert orjson.loads(raw)["mrr"] >= 0


def test_segments_restrict_the_traffic() -> None:
    values = [orjson.loads(v) for _t, _k, v in generate(3, 500, START_MS, segments=("smb",))]
    assert {v["segment"] for v in values if "segment" in v} == {"smb"}
    with pytest.raises(ValueError, match="unknown segments"):
        list(generate(3, 10, START_MS, segments=("gov",)))


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(START_MS + 5) == "2026-11-18T11:06:40.005Z"
    assert rfc3339(START_MS, offset_h=-5) == "2026-11-18T06:06:40.000-05:00"


def test_scenario_spike_is_relative_to_its_origin() -> None:
    assert Scenario("quiet").spike(START_MS) is None
    spike = SCENARIOS["demo"].spike(START_MS)
    assert spike is not None and spike.segment == "enterprise"
    assert spike.start_ms == START_MS + 20_000 and spike.end_ms > spike.start_ms
