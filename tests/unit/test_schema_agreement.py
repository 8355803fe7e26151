"""schemas/*.json and streams.events.decode describe the same contract.

Every corpus case goes through both; they must agree (valid <=> not a Rejection). The checks
JSON Schema cannot express are listed in schemas/README.md and tested in DECODER_ONLY, and the
hypothesis tests generate mutations of valid events to look for any other disagreement.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from streams.events import (
    TOPIC_CANCELLATIONS,
    TOPIC_CUSTOMERS,
    TOPIC_SUPPORT,
    TOPIC_SURVEYS,
    Rejection,
    decode,
)
from tests.corpus import (
    AGREEMENT_NOW_MS,
    BAD_TIMES,
    BASES,
    CORPUS,
    DECODER_ONLY,
    GOOD_TIMES,
    SCHEMA_DIR,
    SCHEMA_FILES,
    Payload,
    T,
    cross_field_ok,
    encode,
    load_strict,
)

ALL_SCHEMAS = (
    "survey-response.json",
    "support-interaction.json",
    "cancellation.json",
    "customer.json",
    "score.json",
    "alert.json",
    "dead-letter.json",
    "followup.json",
)


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_ok(topic: str, raw: bytes) -> bool:
    try:
        document = load_strict(raw)
    except ValueError:
        return False
    return validator(SCHEMA_FILES[topic]).is_valid(document)


def decoder_ok(topic: str, raw: bytes) -> bool:
    return not isinstance(decode(topic, raw, AGREEMENT_NOW_MS), Rejection)


# ---- the schema files themselves ---------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_schema_file_is_valid_draft_2020_12(name: str) -> None:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/" + name)
    assert schema["type"] == "object" and schema["additionalProperties"] is True


def test_no_stray_schema_files() -> None:
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(ALL_SCHEMAS)


# ---- the corpus ------------------------------------------------------------------------------


def test_corpus_covers_every_topic() -> None:
    assert len(CORPUS) >= 80
    for topic in SCHEMA_FILES:
        oks = {case.ok for case in CORPUS if case.topic == topic}
        assert oks == {True, False}, topic


def _case_id(index: int, topic: str, payload: Payload, ok: bool) -> str:
    return f"{index}-{topic.split('.')[1]}-{'ok' if ok else 'bad'}"


@pytest.mark.parametrize(
    ("topic", "payload", "ok"),
    CORPUS,
    ids=[_case_id(i, *case) for i, case in enumerate(CORPUS)],
)
def test_corpus_agreement(topic: str, payload: Payload, ok: bool) -> None:
    raw = encode(payload)
    assert decoder_ok(topic, raw) is ok, decode(topic, raw, AGREEMENT_NOW_MS)
    assert schema_ok(topic, raw) is ok


@pytest.mark.parametrize(("topic", "payload", "reason"), DECODER_ONLY)
def test_decoder_only_checks(topic: str, payload: Payload, reason: str) -> None:
    raw = encode(payload)
    assert schema_ok(topic, raw), "the schema accepts it: JSON Schema cannot express this check"
    result = decode(topic, raw, AGREEMENT_NOW_MS)
    assert isinstance(result, Rejection) and result.reason == reason


# ---- generated: mutations of valid events ----------------------------------------------------

EXTRA_KEYS = {
    TOPIC_SURVEYS: [
        "channel",
        "touchpoint",
        "segment",
        "region",
        "plan",
        "comment",
        "scale_min",
        "scale_max",
    ],
    TOPIC_SUPPORT: [
        "event_id",
        "opened_at",
        "channel",
        "segment",
        "region",
        "priority",
    ],
    TOPIC_CANCELLATIONS: ["mrr", "reason", "segment", "region", "plan", "channel"],
    TOPIC_CUSTOMERS: ["started_at", "mrr", "segment", "region", "plan"],
}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
values = st.one_of(
    scalars,
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=-3, max_value=12).map(float),
    st.floats(min_value=-3, max_value=12),
    st.sampled_from([*GOOD_TIMES, *BAD_TIMES]),
    st.sampled_from(
        [
            "nps",
            "csat",
            "ces",
            "opened",
            "responded",
            "resolved",
            "reopened",
            "active",
            "cancelled",
            "",
            "x",
        ]
    ),
    st.lists(scalars, max_size=2),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)


@st.composite
def survey_events(draw: st.DrawFn) -> dict[str, Any]:
    survey = draw(st.sampled_from(["nps", "csat", "ces"]))
    low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[survey]
    event: dict[str, Any] = {
        "response_id": draw(st.sampled_from(["r-1", "r-2", "é"])),
        "customer_id": "c-1",
        "survey": survey,
        "score": draw(st.integers(min_value=low, max_value=high)),
        "occurred_at": draw(st.sampled_from(GOOD_TIMES)),
    }
    if survey != "nps" and draw(st.booleans()):  # a custom scale, sometimes half given
        event["scale_min"] = draw(st.none() | st.integers(min_value=-2, max_value=4))
        event["scale_max"] = draw(st.none() | st.integers(min_value=2, max_value=11))
    return event


@st.composite
def mutated(draw: st.DrawFn, topic: str, base: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    event = dict(draw(base))
    keys = sorted({*event, *EXTRA_KEYS[topic], "unknown_extra"})
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            event.pop(key, None)
        else:
            event[key] = draw(values)
    return event


def _agree(topic: str, event: dict[str, Any]) -> None:
    raw = json.dumps(event).encode()  # json, not orjson: integers beyond 64 bits are allowed
    expected = schema_ok(topic, raw) and cross_field_ok(topic, event)
    assert decoder_ok(topic, raw) is expected, decode(topic, raw, AGREEMENT_NOW_MS)


@settings(max_examples=1500, deadline=None)
@given(event=mutated(TOPIC_SURVEYS, survey_events()))
def test_generated_surveys_agree(event: dict[str, Any]) -> None:
    _agree(TOPIC_SURVEYS, event)


@settings(max_examples=600, deadline=None)
@given(data=st.data(), topic=st.sampled_from(sorted(set(SCHEMA_FILES) - {TOPIC_SURVEYS})))
def test_generated_other_events_agree(data: st.DataObject, topic: str) -> None:
    _agree(topic, data.draw(mutated(topic, st.just(BASES[topic]))))


# ---- output records: a few worked examples per schema ----------------------------------------

SCORE = {
    "metric": "nps",
    "window": "1h",
    "window_start": "2026-11-22T09:01:00Z",
    "window_end": "2026-11-22T10:01:00Z",
    "dimension": "segment+channel",
    "member": "enterprise+chat",
    "value": 42.5,
    "n": 120,
    "ci95_low": 30.1,
    "ci95_high": 54.9,
    "counts": {"n": 120, "promoters": 70, "passives": 25, "detractors": 25},
    "revision": 0,
    "as_of": "2026-11-22T10:00:59.250Z",
    "emitted_at": "2026-11-22T10:01:00.013Z",
    "definition": "nps/v1",
}
ALERT = {
    "alert_id": "nps_drop|1h|segment=enterprise|1795341600000",
    "rule": "nps_drop",
    "state": "firing",
    "severity": "warning",
    "metric": "nps",
    "window": "1h",
    "dimension": "segment",
    "member": "enterprise",
    "current": {"value": 10.0, "n": 80, "ci95_low": -5.0, "ci95_high": 25.0},
    "baseline": {"value": 45.0, "n": 2000, "window": "7d"},
    "delta": -35.0,
    "evidence": {"test": "two_sample_z", "statistic": -4.2, "p_value": 0.00001},
    "started_at": T,
    "updated_at": T,
    "summary": "NPS for segment=enterprise over 1h is 10.0, 35.0 below its 7d baseline.",
}
DEAD_LETTER = {
    "topic": "cx.survey-responses",
    "partition": 3,
    "offset": 1234,
    "reason": "score_out_of_scale",
    "detail": "nps score 11 is outside 0..10",
    "raw": '{"score": 11}',
    "raw_encoding": "utf-8",
    "received_at": "2026-11-22T10:00:01.5Z",
}
FOLLOWUP = {
    "followup_id": "r-1",
    "customer_id": "c-1",
    "survey": "nps",
    "score": 3,
    "category": "detractor",
    "comment": None,
    "occurred_at": T,
    "dimensions": {
        "channel": "chat",
        "touchpoint": "unknown",
        "segment": "enterprise",
        "region": "eu",
        "plan": "pro",
    },
    "emitted_at": T,
}


def _w(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def _without(base: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != key}


OUTPUTS: list[tuple[str, dict[str, Any], bool]] = [
    ("score.json", SCORE, True),
    ("score.json", _w(SCORE, value=None, ci95_low=None, ci95_high=None, n=3), True),
    ("score.json", _without(_without(SCORE, "ci95_low"), "ci95_high"), True),
    (
        "score.json",
        _w(SCORE, counts={"n": 5, "first_response": [1, 2, 2], "h": {"le_60": 3}}),
        True,
    ),
    ("score.json", _w(SCORE, dimension="all", member="all", revision=7, late=True), True),
    *[
        ("score.json", _without(SCORE, key), False)
        for key in SCORE
        if key not in ("ci95_low", "ci95_high")
    ],
    ("score.json", _w(SCORE, window_end="2026-11-22T10:01:00+00:00"), False),  # UTC: Z only
    ("score.json", _w(SCORE, as_of="2026-11-22T10:01:00"), False),
    ("score.json", _w(SCORE, emitted_at=1795341600000), False),
    ("score.json", _w(SCORE, value="42"), False),
    ("score.json", _w(SCORE, n=-1), False),
    ("score.json", _w(SCORE, revision=1.5), False),
    ("score.json", _w(SCORE, member="a|b"), False),
    ("score.json", _w(SCORE, member=""), False),
    ("score.json", _w(SCORE, window="1 hour"), False),
    ("score.json", _w(SCORE, definition="nps"), False),
    ("score.json", _w(SCORE, counts={"n": "5"}), False),
    ("alert.json", ALERT, True),
    ("alert.json", _w(ALERT, state="resolved", baseline=None, delta=None), True),
    ("alert.json", _w(ALERT, current={"value": None, "n": 0}), True),
    *[("alert.json", _without(ALERT, key), False) for key in ALERT],
    ("alert.json", _w(ALERT, state="pending"), False),
    ("alert.json", _w(ALERT, current={"value": 1.0}), False),
    ("alert.json", _w(ALERT, baseline={"value": 1.0, "n": 5}), False),
    ("alert.json", _w(ALERT, evidence={"statistic": 1.0}), False),
    ("alert.json", _w(ALERT, started_at="yesterday"), False),
    ("alert.json", _w(ALERT, summary=""), False),
    ("dead-letter.json", DEAD_LETTER, True),
    ("dead-letter.json", _w(DEAD_LETTER, raw="/w==", raw_encoding="base64"), True),
    ("dead-letter.json", _w(DEAD_LETTER, raw=None, reason="empty", detail="empty message"), True),
    *[("dead-letter.json", _without(DEAD_LETTER, key), False) for key in DEAD_LETTER],
    ("dead-letter.json", _w(DEAD_LETTER, raw="not base64!", raw_encoding="base64"), False),
    ("dead-letter.json", _w(DEAD_LETTER, raw_encoding="latin-1"), False),
    ("dead-letter.json", _w(DEAD_LETTER, reason="Not A Code"), False),
    ("dead-letter.json", _w(DEAD_LETTER, offset=-1), False),
    ("followup.json", FOLLOWUP, True),
    (
        "followup.json",
        _w(
            FOLLOWUP,
            survey="csat",
            score=2,
            category="dissatisfied",
            comment="slow support",
            scale_min=1,
            scale_max=5,
        ),
        True,
    ),
    *[("followup.json", _without(FOLLOWUP, key), False) for key in FOLLOWUP],
    ("followup.json", _w(FOLLOWUP, score=7), False),  # not a detractor
    ("followup.json", _w(FOLLOWUP, category="dissatisfied"), False),
    ("followup.json", _w(FOLLOWUP, survey="ces"), False),
    ("followup.json", _w(FOLLOWUP, dimensions={"channel": "chat"}), False),
    ("followup.json", _w(FOLLOWUP, dimensions={**FOLLOWUP["dimensions"], "plan": None}), False),
    ("followup.json", _w(FOLLOWUP, occurred_at=1795341600000), False),
]


@pytest.mark.parametrize(("name", "record", "ok"), OUTPUTS)
def test_output_records(name: str, record: dict[str, Any], ok: bool) -> None:
    assert validator(name).is_valid(record) is ok, list(validator(name).iter_errors(record))
