"""streams.events.decode: worked examples, one table of rejections per reason code, fuzzing.

The clock is injected (NOW_MS); nothing here reads the wall clock.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events import (
    MAX_DETAIL,
    MAX_TIME_MS,
    TOPIC_CANCELLATIONS,
    TOPIC_CUSTOMERS,
    TOPIC_SUPPORT,
    TOPIC_SURVEYS,
    Cancellation,
    Customer,
    Event,
    Rejection,
    Support,
    Survey,
    decode,
    parse_time,
)
from tests.corpus import BASES, CANCELLATION, CUSTOMER, SUPPORT, SURVEY, T_MS, T, encode

NOW_MS = T_MS + 3_600_000  # one hour after the events' time
TOPICS = (TOPIC_SURVEYS, TOPIC_SUPPORT, TOPIC_CANCELLATIONS, TOPIC_CUSTOMERS)
EVENT_TYPES = (Survey, Support, Cancellation, Customer)
REASONS = {
    "empty",
    "too_large",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "unknown_survey",
    "score_out_of_scale",
    "bad_time",
    "bad_value",
    "future",
    "unknown_topic",
}
UNKNOWN5 = dict.fromkeys(("channel", "touchpoint", "segment", "region", "plan"), "unknown")


def run(topic: str, payload: dict[str, Any] | bytes | None, **kwargs: int) -> Event | Rejection:
    raw = None if payload is None else encode(payload)
    return decode(topic, raw, NOW_MS, **kwargs)


def reason(topic: str, payload: dict[str, Any] | bytes | None, **kwargs: int) -> str | None:
    result = run(topic, payload, **kwargs)
    return result.reason if isinstance(result, Rejection) else None


def w(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def without(base: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != key}


# ---- worked examples ---------------------------------------------------------------------


def test_survey_full_example() -> None:
    payload = w(
        SURVEY,
        occurred_at="2026-11-22T10:00:00.123+02:00",
        channel="chat",
        segment="enterprise",
        region="",
        plan=None,
        comment="slow",
        extra_field=[1, 2],
    )
    assert run(TOPIC_SURVEYS, payload) == Survey(
        event_id="r-1",
        customer_id="c-1",
        survey="nps",
        score=9,
        t_ms=T_MS - 7_200_000 + 123,
        dims={
            "channel": "chat",
            "touchpoint": "unknown",
            "segment": "enterprise",
            "region": "unknown",
            "plan": "unknown",
        },
        comment="slow",
        scale_min=0,
        scale_max=10,
    )


@pytest.mark.parametrize(
    ("changes", "scale"),
    [
        ({"survey": "nps", "score": 0}, (0, 10)),
        ({"survey": "nps", "score": 10, "scale_min": 0, "scale_max": 10}, (0, 10)),
        ({"survey": "csat", "score": 4}, (1, 5)),
        ({"survey": "ces", "score": 6}, (1, 7)),
        ({"survey": "csat", "score": 9, "scale_min": 0, "scale_max": 10}, (0, 10)),
        ({"survey": "csat", "score": 9, "scale_max": 10}, (1, 10)),
        ({"survey": "ces", "score": 3, "scale_min": 2, "scale_max": None}, (2, 7)),
        ({"survey": "ces", "score": 5, "scale_min": 1.0, "scale_max": 5.0}, (1, 5)),
    ],
)
def test_survey_scales(changes: dict[str, Any], scale: tuple[int, int]) -> None:
    event = run(TOPIC_SURVEYS, w(SURVEY, **changes))
    assert isinstance(event, Survey)
    assert (event.scale_min, event.scale_max) == scale
    assert type(event.scale_min) is int and type(event.scale_max) is int
    assert event.dims == UNKNOWN5 and event.comment is None


def test_integral_float_score_is_an_int() -> None:
    event = run(TOPIC_SURVEYS, w(SURVEY, score=9.0, occurred_at=float(T_MS)))
    assert isinstance(event, Survey)
    assert (event.score, event.t_ms) == (9, T_MS)
    assert type(event.score) is int and type(event.t_ms) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (T, T_MS),
        ("2026-11-22t10:00:00z", T_MS),
        ("2026-11-22T10:00:00-00:00", T_MS),
        ("2026-11-22T12:00:00+02:00", T_MS),
        ("2026-11-22T04:30:00-05:30", T_MS),
        ("2026-11-22T10:00:00.1Z", T_MS + 100),
        ("2026-11-22T10:00:00.123Z", T_MS + 123),
        ("2026-11-22T10:00:00.999999999Z", T_MS + 999),  # truncated, not rounded
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("9999-12-31T23:59:59.999Z", MAX_TIME_MS),
        (T_MS, T_MS),
        (float(T_MS), T_MS),
        (0, 0),
        (MAX_TIME_MS, MAX_TIME_MS),
    ],
)
def test_parse_time(value: object, expected: int) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T10:00:00",
        "2026-11-22",
        "2026-11-22 10:00:00Z",
        "2026-11-22T10:00:60Z",
        "2026-02-30T00:00:00Z",
        "2026-11-22T10:00:00Z\n",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:30:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "+2026-11-22T10:00:00Z",
        "",
        -1,
        MAX_TIME_MS + 1,
        1.5,
        math.inf,
        math.nan,
        True,
        None,
        [T],
    ],
)
def test_parse_time_rejects(value: object) -> None:
    assert parse_time(value) is None


@pytest.mark.parametrize(
    ("occurred_at", "expected_id"),
    [
        (T, f"i-1:opened:{T}"),
        ("2026-11-22t12:00:00+02:00", "i-1:opened:2026-11-22t12:00:00+02:00"),  # as written
        (T_MS, f"i-1:opened:{T_MS}"),
        (float(T_MS), f"i-1:opened:{T_MS}"),
    ],
)
def test_support_default_event_id(occurred_at: object, expected_id: str) -> None:
    event = run(TOPIC_SUPPORT, w(SUPPORT, occurred_at=occurred_at))
    assert isinstance(event, Support)
    assert event.event_id == expected_id
    assert event.t_ms == T_MS


def test_support_example() -> None:
    payload = w(
        SUPPORT,
        status="responded",
        event_id="e-9",
        opened_at="2026-11-22T09:00:00Z",
        channel="email",
        priority="p1",
        touchpoint="ignored: not a support dimension",
    )
    assert run(TOPIC_SUPPORT, payload) == Support(
        event_id="e-9",
        interaction_id="i-1",
        customer_id="c-1",
        status="responded",
        t_ms=T_MS,
        opened_at_ms=T_MS - 3_600_000,
        dims={"channel": "email", "segment": "unknown", "region": "unknown", "priority": "p1"},
    )
    event = run(TOPIC_SUPPORT, w(SUPPORT, event_id=None, opened_at=None))
    assert isinstance(event, Support)
    assert (event.event_id, event.opened_at_ms) == (f"i-1:opened:{T}", None)


@pytest.mark.parametrize(
    ("mrr", "expected"), [(None, 0.0), (0, 0.0), (120, 120.0), (99.5, 99.5), (-0.0, 0.0)]
)
def test_cancellation_mrr(mrr: object, expected: float) -> None:
    payload = CANCELLATION if mrr is None else w(CANCELLATION, mrr=mrr)
    event = run(TOPIC_CANCELLATIONS, payload)
    assert isinstance(event, Cancellation)
    assert type(event.mrr) is float and event.mrr == expected
    assert math.copysign(1.0, event.mrr) == 1.0


def test_cancellation_example() -> None:
    payload = w(CANCELLATION, occurred_at=T_MS, mrr=49, reason="price", plan="pro", touchpoint="x")
    assert run(TOPIC_CANCELLATIONS, payload) == Cancellation(
        event_id="x-1",
        customer_id="c-1",
        t_ms=T_MS,
        mrr=49.0,
        reason="price",
        dims={"segment": "unknown", "region": "unknown", "plan": "pro", "channel": "unknown"},
    )


def test_customer_example() -> None:
    assert run(TOPIC_CUSTOMERS, CUSTOMER) == Customer(
        customer_id="c-1",
        status="active",
        started_at_ms=None,
        mrr=0.0,
        dims={"segment": "unknown", "region": "unknown", "plan": "unknown"},
    )
    payload = w(
        CUSTOMER, status="cancelled", started_at="2999-01-01T00:00:00Z", mrr=10, region="eu"
    )
    event = run(TOPIC_CUSTOMERS, payload)
    assert isinstance(event, Customer)
    assert event.started_at_ms == parse_time("2999-01-01T00:00:00Z")  # no future check
    assert (event.status, event.mrr, event.dims["region"]) == ("cancelled", 10.0, "eu")


def test_future_boundary() -> None:
    at_limit = w(SURVEY, occurred_at=NOW_MS + 300_000)
    assert isinstance(run(TOPIC_SURVEYS, at_limit), Survey)
    assert reason(TOPIC_SURVEYS, w(at_limit, occurred_at=NOW_MS + 300_001)) == "future"
    assert reason(TOPIC_SURVEYS, at_limit, max_future_ms=0) == "future"
    # opened_at is not checked against the clock; only the event's own time is
    assert isinstance(run(TOPIC_SUPPORT, w(SUPPORT, opened_at=MAX_TIME_MS)), Support)


def test_size_boundary() -> None:
    raw = encode(SURVEY)
    assert isinstance(decode(TOPIC_SURVEYS, raw, NOW_MS, max_bytes=len(raw)), Survey)
    rejected = decode(TOPIC_SURVEYS, raw, NOW_MS, max_bytes=len(raw) - 1)
    assert rejected == Rejection("too_large", f"message is {len(raw)} bytes (max {len(raw) - 1})")


def test_events_are_frozen() -> None:
    event = run(TOPIC_SURVEYS, SURVEY)
    with pytest.raises(AttributeError):
        setattr(event, "score", 3)  # noqa: B010


# ---- rejections: every reason code, every topic ------------------------------------------

BIG = w(SURVEY, comment="x" * 70_000)
DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 2000 + b"1" + b"}" * 2000

REJECTED: list[tuple[str, dict[str, Any] | bytes | None, str]] = [
    ("cx.nope", SURVEY, "unknown_topic"),
    ("", b"", "unknown_topic"),
    *[(topic, None, "empty") for topic in TOPICS],
    *[(topic, b"", "empty") for topic in TOPICS],
    *[(topic, w(BASES[topic], pad="x" * 65_536), "too_large") for topic in TOPICS],
    (TOPIC_SURVEYS, BIG, "too_large"),
    *[
        (topic, raw, "not_json")
        for topic in TOPICS
        for raw in (
            b"{",
            b"not json",
            b"\xff\xfe",
            b'{"customer_id":"c-\xff"}',
            b"\xef\xbb\xbf{}",  # BOM
            b'{"score": NaN}',
            b'{"score": Infinity}',
            b'{"x": 1e400}',
            b'{"x": "\\ud800"}',  # lone surrogate
            b"{}{}",
            b"{'a': 1}",
            DEEP,
            DEEP_OBJECT,
        )
    ],
    *[(topic, raw, "not_object") for topic in TOPICS for raw in (b"[]", b"null", b"1", b'"x"')],
    *[(t, without(BASES[t], key), "missing_field") for t in TOPICS for key in BASES[t]],
    *[(t, w(BASES[t], **{key: None}), "missing_field") for t in TOPICS for key in BASES[t]],
    # wrong_type
    (TOPIC_SURVEYS, w(SURVEY, response_id=1), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, customer_id=["c"]), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, survey=0), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, score="9"), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, score=9.5), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, score=True), "wrong_type"),  # bool is not an integer
    (TOPIC_SURVEYS, w(SURVEY, occurred_at=1.5), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, occurred_at=True), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, occurred_at={"ms": 1}), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, scale_min="0"), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, survey="csat", score=3, scale_max=5.5), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, channel=1), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, plan=False), "wrong_type"),
    (TOPIC_SURVEYS, w(SURVEY, comment=["x"]), "wrong_type"),
    (TOPIC_SUPPORT, w(SUPPORT, interaction_id=5), "wrong_type"),
    (TOPIC_SUPPORT, w(SUPPORT, event_id=5), "wrong_type"),
    (TOPIC_SUPPORT, w(SUPPORT, status=["opened"]), "wrong_type"),
    (TOPIC_SUPPORT, w(SUPPORT, opened_at=False), "wrong_type"),
    (TOPIC_SUPPORT, w(SUPPORT, priority=1), "wrong_type"),
    (TOPIC_CANCELLATIONS, w(CANCELLATION, mrr="12"), "wrong_type"),
    (TOPIC_CANCELLATIONS, w(CANCELLATION, mrr=True), "wrong_type"),
    (TOPIC_CANCELLATIONS, w(CANCELLATION, reason={}), "wrong_type"),
    (TOPIC_CANCELLATIONS, w(CANCELLATION, channel=0.5), "wrong_type"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, customer_id=1), "wrong_type"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, status=True), "wrong_type"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, started_at=[]), "wrong_type"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, mrr=[1]), "wrong_type"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, segment={"a": "b"}), "wrong_type"),
    # unknown_survey
    (TOPIC_SURVEYS, w(SURVEY, survey="NPS"), "unknown_survey"),
    (TOPIC_SURVEYS, w(SURVEY, survey="csat2"), "unknown_survey"),
    (TOPIC_SURVEYS, w(SURVEY, survey=""), "unknown_survey"),
    (TOPIC_SURVEYS, w(SURVEY, survey="x" * 10_000), "unknown_survey"),
    # score_out_of_scale
    (TOPIC_SURVEYS, w(SURVEY, score=11), "score_out_of_scale"),
    (TOPIC_SURVEYS, w(SURVEY, score=-1), "score_out_of_scale"),
    (TOPIC_SURVEYS, w(SURVEY, score=10**18), "score_out_of_scale"),
    (TOPIC_SURVEYS, w(SURVEY, survey="csat", score=0), "score_out_of_scale"),
    (TOPIC_SURVEYS, w(SURVEY, survey="csat", score=6), "score_out_of_scale"),
    (TOPIC_SURVEYS, w(SURVEY, survey="ces", score=0), "score_out_of_scale"),
    (TOPIC_SURVEYS, w(SURVEY, survey="ces", score=8), "score_out_of_scale"),
    (
        TOPIC_SURVEYS,
        w(SURVEY, survey="csat", score=0, scale_min=1, scale_max=10),
        "score_out_of_scale",
    ),
    (TOPIC_SURVEYS, w(SURVEY, survey="ces", score=6, scale_max=5), "score_out_of_scale"),
    # bad_time
    *[
        (t, w(BASES[t], occurred_at=bad), "bad_time")
        for t in (TOPIC_SURVEYS, TOPIC_SUPPORT, TOPIC_CANCELLATIONS)
        for bad in (
            "2026-11-22T10:00:00",
            "22/11/2026",
            "2026-02-30T00:00:00Z",
            -1,
            MAX_TIME_MS + 1,
        )
    ],
    (TOPIC_SURVEYS, w(SURVEY, occurred_at=""), "bad_time"),
    (TOPIC_SURVEYS, w(SURVEY, occurred_at="2026-11-22T10:00:60Z"), "bad_time"),
    (TOPIC_SURVEYS, w(SURVEY, occurred_at="1970-01-01T00:30:00+01:00"), "bad_time"),
    (TOPIC_SURVEYS, w(SURVEY, occurred_at=1e30), "bad_time"),
    (TOPIC_SUPPORT, w(SUPPORT, opened_at="2026-11-22 09:00:00+00:00"), "bad_time"),
    (TOPIC_SUPPORT, w(SUPPORT, opened_at=-1), "bad_time"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, started_at="2025-01-01"), "bad_time"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, started_at=-3600000), "bad_time"),
    # bad_value
    (TOPIC_SURVEYS, w(SURVEY, response_id=""), "bad_value"),
    (TOPIC_SURVEYS, w(SURVEY, customer_id=""), "bad_value"),
    (TOPIC_SURVEYS, w(SURVEY, scale_max=5), "bad_value"),  # nps is always 0-10
    (TOPIC_SURVEYS, w(SURVEY, scale_min=1), "bad_value"),
    (TOPIC_SURVEYS, w(SURVEY, survey="csat", score=3, scale_min=5, scale_max=3), "bad_value"),
    (TOPIC_SURVEYS, w(SURVEY, survey="csat", score=3, scale_min=3, scale_max=3), "bad_value"),
    (TOPIC_SURVEYS, w(SURVEY, survey="csat", score=1, scale_max=1), "bad_value"),
    (TOPIC_SURVEYS, w(SURVEY, survey="ces", score=7, scale_min=7), "bad_value"),
    (TOPIC_SUPPORT, w(SUPPORT, interaction_id=""), "bad_value"),
    (TOPIC_SUPPORT, w(SUPPORT, event_id=""), "bad_value"),
    (TOPIC_SUPPORT, w(SUPPORT, status="closed"), "bad_value"),
    (TOPIC_SUPPORT, w(SUPPORT, status="Opened"), "bad_value"),
    (TOPIC_CANCELLATIONS, w(CANCELLATION, cancellation_id=""), "bad_value"),
    (TOPIC_CANCELLATIONS, w(CANCELLATION, mrr=-0.01), "bad_value"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, customer_id=""), "bad_value"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, status="churned"), "bad_value"),
    (TOPIC_CUSTOMERS, w(CUSTOMER, mrr=-5), "bad_value"),
    # future: more than max_future_ms (300 s) after NOW_MS
    *[
        (t, w(BASES[t], occurred_at=future), "future")
        for t in (TOPIC_SURVEYS, TOPIC_SUPPORT, TOPIC_CANCELLATIONS)
        for future in (NOW_MS + 300_001, "2030-01-01T00:00:00Z", MAX_TIME_MS)
    ],
]


@pytest.mark.parametrize(("topic", "payload", "code"), REJECTED)
def test_rejected(topic: str, payload: dict[str, Any] | bytes | None, code: str) -> None:
    result = run(topic, payload)
    assert isinstance(result, Rejection), result
    assert result.reason == code, result.detail
    assert 0 < len(result.detail) <= MAX_DETAIL and "\n" not in result.detail


def test_every_reason_code_is_tested() -> None:
    assert {code for _, _, code in REJECTED} == REASONS
    for topic in TOPICS:
        tested = {code for t, _, code in REJECTED if t == topic}
        expected = REASONS - {"unknown_topic"}
        if topic != TOPIC_SURVEYS:
            expected -= {"unknown_survey", "score_out_of_scale"}
        if topic == TOPIC_CUSTOMERS:
            expected -= {"future"}
        assert tested == expected, topic


def test_first_problem_wins_in_field_order() -> None:
    both = w(SURVEY, response_id="", score=99)
    assert reason(TOPIC_SURVEYS, both) == "bad_value"
    late_and_bad = w(SURVEY, occurred_at=MAX_TIME_MS, channel=5)
    assert reason(TOPIC_SURVEYS, late_and_bad) == "wrong_type"


# ---- fuzz: decode never raises -----------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from([T, "nps", "csat", "ces", "opened", "active", "", "2026-11-22T10:00:00"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
ALL_KEYS = sorted(
    {k for base in BASES.values() for k in base}
    | {"scale_min", "scale_max", "opened_at", "started_at", "event_id", "mrr", "comment"}
    | {"channel", "touchpoint", "segment", "region", "plan", "priority", "reason"}
)


def check_outcome(result: object) -> None:
    assert isinstance(result, (*EVENT_TYPES, Rejection))
    if isinstance(result, Rejection):
        assert result.reason in REASONS
        assert 0 < len(result.detail) <= MAX_DETAIL and "\n" not in result.detail


@settings(max_examples=300, deadline=None)
@given(topic=st.sampled_from((*TOPICS, "cx.other")), raw=st.binary(max_size=300))
def test_fuzz_bytes(topic: str, raw: bytes) -> None:
    check_outcome(decode(topic, raw, NOW_MS))


@settings(max_examples=300, deadline=None)
@given(topic=st.sampled_from(TOPICS), value=json_values)
def test_fuzz_any_json(topic: str, value: object) -> None:
    check_outcome(decode(topic, json.dumps(value).encode(), NOW_MS))


@settings(max_examples=500, deadline=None)
@given(
    topic=st.sampled_from(TOPICS),
    changes=st.dictionaries(st.sampled_from(ALL_KEYS), json_values, max_size=4),
    drop=st.lists(st.sampled_from(ALL_KEYS), max_size=2),
)
def test_fuzz_mutated_events(topic: str, changes: dict[str, Any], drop: list[str]) -> None:
    payload = {k: v for k, v in w(BASES[topic], **changes).items() if k not in drop}
    check_outcome(decode(topic, json.dumps(payload).encode(), NOW_MS))


@pytest.mark.parametrize("topic", TOPICS)
def test_orjson_bytes_roundtrip(topic: str) -> None:
    # The producers' path: orjson.dumps of a valid event decodes to an event, never a Rejection.
    assert isinstance(decode(topic, orjson.dumps(BASES[topic]), NOW_MS), EVENT_TYPES)
