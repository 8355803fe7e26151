"""The event-contract corpus shared by the decoder tests and the schema-agreement tests.

``CORPUS``: (topic, payload, expected_ok) where payload is a dict (sent as orjson bytes) or raw
bytes. ``streams.events.decode`` and ``schemas/*.json`` must agree on every case; none of them
is in the future or too large (``AGREEMENT_NOW_MS`` puts the clock at the end of time).

``DECODER_ONLY``: (topic, payload, reason) for the checks JSON Schema cannot express (see
``schemas/README.md``): the schema accepts these, the decoder rejects them with ``reason``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from streams.events import (
    MAX_TIME_MS,
    TOPIC_CANCELLATIONS,
    TOPIC_CUSTOMERS,
    TOPIC_SUPPORT,
    TOPIC_SURVEYS,
)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_FILES = {
    TOPIC_SURVEYS: "survey-response.json",
    TOPIC_SUPPORT: "support-interaction.json",
    TOPIC_CANCELLATIONS: "cancellation.json",
    TOPIC_CUSTOMERS: "customer.json",
}
AGREEMENT_NOW_MS = MAX_TIME_MS

T = "2026-11-22T10:00:00Z"
T_MS = 1_795_341_600_000

Payload = dict[str, Any] | bytes


class Case(NamedTuple):
    topic: str
    payload: Payload
    ok: bool


class DecoderOnly(NamedTuple):
    topic: str
    payload: Payload
    reason: str


def encode(payload: Payload) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a double")
    return value


def load_strict(raw: bytes) -> object:
    """RFC 8259 JSON for the schema side: strict UTF-8, no BOM, no NaN/Infinity, finite numbers.

    Raises ValueError (json.JSONDecodeError and UnicodeDecodeError are both ValueErrors).
    """
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite)


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def _without(base: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != key}


SURVEY = {"response_id": "r-1", "customer_id": "c-1", "survey": "nps", "score": 9, "occurred_at": T}
SUPPORT = {"interaction_id": "i-1", "customer_id": "c-1", "status": "opened", "occurred_at": T}
CANCELLATION = {"cancellation_id": "x-1", "customer_id": "c-1", "occurred_at": T}
CUSTOMER = {"customer_id": "c-1", "status": "active"}
BASES: dict[str, dict[str, Any]] = {
    TOPIC_SURVEYS: SURVEY,
    TOPIC_SUPPORT: SUPPORT,
    TOPIC_CANCELLATIONS: CANCELLATION,
    TOPIC_CUSTOMERS: CUSTOMER,
}

GOOD_TIMES: list[object] = [
    T,
    "2026-11-22T10:00:00.123+02:00",
    "2026-11-22t10:00:00z",
    "2026-11-22T10:00:00.123456789Z",
    "2026-11-22T10:00:00-00:00",
    "2024-02-29T23:59:59+23:59",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
    T_MS,
    float(T_MS),
    0,
    MAX_TIME_MS,
]
BAD_TIMES: list[object] = [
    "2026-11-22T10:00:00",  # naive: no offset
    "2026-11-22",
    "2026-11-22 10:00:00Z",  # space instead of T
    "2026-11-22T10:00Z",
    "2026-11-22T10:00:00+0200",
    "2026-11-22T10:00:00.Z",
    "2026-02-30T10:00:00Z",
    "2023-02-29T10:00:00Z",
    "2026-13-01T10:00:00Z",
    "2026-11-22T24:00:00Z",
    "2026-11-22T10:00:60Z",  # leap second
    "2026-11-22T10:00:00+24:00",
    "1969-12-31T23:59:59Z",
    "10000-01-01T00:00:00Z",
    "2026-11-22T10:00:00Z\n",
    " 2026-11-22T10:00:00Z",
    "\uff12026-11-22T10:00:00Z",  # full-width digit
    "",
    "yesterday",
    -1,
    MAX_TIME_MS + 1,
    1.5,
    True,
    [],
    {},
]

CORPUS: list[Case] = [
    # ---- cx.survey-responses: good -------------------------------------------------------
    Case(TOPIC_SURVEYS, SURVEY, True),
    Case(
        TOPIC_SURVEYS,
        _with(
            SURVEY,
            channel="chat",
            touchpoint="onboarding",
            segment="enterprise",
            region="eu",
            plan="pro",
            comment="great",
        ),
        True,
    ),
    Case(TOPIC_SURVEYS, _with(SURVEY, score=0), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, score=10), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, score=9.0), True),  # 9.0 is the JSON number 9
    Case(TOPIC_SURVEYS, _with(SURVEY, scale_min=0, scale_max=10), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, scale_min=None, scale_max=None), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=1), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=5), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=1), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=7), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=0, scale_min=0, scale_max=10), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=10, scale_min=0, scale_max=10), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=8, scale_max=10), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=3, scale_min=1, scale_max=5), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=2, scale_min=2), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=0, scale_min=0, scale_max=10), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, channel=None, segment="", comment=None), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, response_id="ü-1", customer_id="客户-1"), True),
    Case(TOPIC_SURVEYS, _with(SURVEY, extra={"nested": [1, None, {"x": True}]}, v=2), True),
    *[Case(TOPIC_SURVEYS, _with(SURVEY, occurred_at=t), True) for t in GOOD_TIMES],
    Case(
        TOPIC_SURVEYS,
        b' {"response_id":"r-1", "customer_id":"c-1", "survey":"nps",\n'
        b' "score":9, "occurred_at":1795341600000}\n',
        True,
    ),
    # ---- cx.survey-responses: bad --------------------------------------------------------
    *[Case(TOPIC_SURVEYS, _without(SURVEY, key), False) for key in SURVEY],
    *[Case(TOPIC_SURVEYS, _with(SURVEY, **{key: None}), False) for key in SURVEY],
    Case(TOPIC_SURVEYS, _with(SURVEY, response_id=""), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, response_id=123), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, customer_id=[]), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="NPS"), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="promoter"), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey=1), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, score="9"), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, score=9.5), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, score=True), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, score=11), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, score=-1), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, score=1e300), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=0), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=6), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=0), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=8), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, scale_max=5), False),  # nps is always 0-10
    Case(TOPIC_SURVEYS, _with(SURVEY, scale_min=1), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=3, scale_min="1"), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=3, scale_max=5.5), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=3, scale_max=False), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=1, scale_max=1), False),  # 1..1
    Case(TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=7, scale_min=7), False),  # 7..7
    Case(TOPIC_SURVEYS, _with(SURVEY, channel=5), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, touchpoint=True), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, segment=["enterprise"]), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, region={"name": "eu"}), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, plan=1.5), False),
    Case(TOPIC_SURVEYS, _with(SURVEY, comment=5), False),
    *[Case(TOPIC_SURVEYS, _with(SURVEY, occurred_at=t), False) for t in BAD_TIMES],
    Case(TOPIC_SURVEYS, b"", False),
    Case(TOPIC_SURVEYS, b"not json", False),
    Case(TOPIC_SURVEYS, b'{"response_id": "r-1"', False),
    Case(TOPIC_SURVEYS, b"[1, 2]", False),
    Case(TOPIC_SURVEYS, b'"r-1"', False),
    Case(TOPIC_SURVEYS, b"null", False),
    Case(TOPIC_SURVEYS, b"9", False),
    Case(
        TOPIC_SURVEYS,
        b'{"response_id":"r-1","customer_id":"c-1","survey":"nps","score":NaN,"occurred_at":0}',
        False,
    ),
    Case(
        TOPIC_SURVEYS,
        b'{"response_id":"r-1","customer_id":"c-1","survey":"nps","score":9,'
        b'"occurred_at":0,"x":Infinity}',
        False,
    ),
    Case(
        TOPIC_SURVEYS,
        b'{"response_id":"r-1","customer_id":"c-1","survey":"nps","score":9,'
        b'"occurred_at":0,"x":1e400}',
        False,
    ),
    Case(
        TOPIC_SURVEYS,
        b'{"response_id":"r-\xff","customer_id":"c-1","survey":"nps","score":9,"occurred_at":0}',
        False,
    ),
    Case(
        TOPIC_SURVEYS,
        b'\xef\xbb\xbf{"response_id":"r-1","customer_id":"c-1","survey":"nps",'
        b'"score":9,"occurred_at":0}',
        False,
    ),
    # ---- cx.support-interactions ---------------------------------------------------------
    *[
        Case(TOPIC_SUPPORT, _with(SUPPORT, status=s), True)
        for s in ("opened", "responded", "resolved", "reopened")
    ],
    Case(TOPIC_SUPPORT, _with(SUPPORT, event_id="e-1"), True),
    Case(TOPIC_SUPPORT, _with(SUPPORT, event_id=None), True),
    Case(TOPIC_SUPPORT, _with(SUPPORT, status="responded", opened_at="2026-11-22T09:00:00Z"), True),
    Case(TOPIC_SUPPORT, _with(SUPPORT, status="resolved", opened_at=T_MS - 60_000), True),
    Case(TOPIC_SUPPORT, _with(SUPPORT, opened_at=None), True),
    Case(TOPIC_SUPPORT, _with(SUPPORT, occurred_at=T_MS), True),
    Case(
        TOPIC_SUPPORT,
        _with(SUPPORT, channel="email", segment="smb", region="us", priority="p1", agent="a-7"),
        True,
    ),
    Case(TOPIC_SUPPORT, _with(SUPPORT, priority=None, channel=""), True),
    *[Case(TOPIC_SUPPORT, _without(SUPPORT, key), False) for key in SUPPORT],
    Case(TOPIC_SUPPORT, _with(SUPPORT, interaction_id=""), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, customer_id=7), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, status="closed"), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, status="OPENED"), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, status=1), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, event_id=""), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, event_id=5), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, occurred_at="2026-11-22T10:00:00"), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, opened_at="2026-11-22T09:00:00"), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, opened_at=-5), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, opened_at=True), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, opened_at=1.5), False),
    Case(TOPIC_SUPPORT, _with(SUPPORT, priority=1), False),
    Case(TOPIC_SUPPORT, b"[]", False),
    # ---- cx.cancellations ----------------------------------------------------------------
    Case(TOPIC_CANCELLATIONS, CANCELLATION, True),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr=0), True),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr=99.5), True),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr=100), True),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr=-0.0), True),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr=None, reason=None), True),
    Case(
        TOPIC_CANCELLATIONS,
        _with(
            CANCELLATION, reason="price", segment="smb", region="eu", plan="basic", channel="web"
        ),
        True,
    ),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, occurred_at="2026-11-22T11:00:00+01:00"), True),
    *[Case(TOPIC_CANCELLATIONS, _without(CANCELLATION, key), False) for key in CANCELLATION],
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, cancellation_id=""), False),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr=-1), False),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr=-0.01), False),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr="100"), False),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, mrr=True), False),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, reason=5), False),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, plan=["pro"]), False),
    Case(TOPIC_CANCELLATIONS, _with(CANCELLATION, occurred_at=-1), False),
    Case(TOPIC_CANCELLATIONS, b'"cancel"', False),
    # ---- cx.customers --------------------------------------------------------------------
    Case(TOPIC_CUSTOMERS, CUSTOMER, True),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, status="cancelled"), True),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, started_at="2025-01-01T00:00:00Z", mrr=49.0), True),
    Case(
        TOPIC_CUSTOMERS,
        _with(CUSTOMER, started_at=T_MS, segment="smb", region="eu", plan="pro"),
        True,
    ),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, started_at=None, mrr=None, plan=None), True),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, started_at="2999-01-01T00:00:00Z"), True),
    *[Case(TOPIC_CUSTOMERS, _without(CUSTOMER, key), False) for key in CUSTOMER],
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, customer_id=1), False),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, customer_id=""), False),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, status="churned"), False),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, status=None), False),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, started_at="2025-01-01"), False),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, started_at=False), False),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, mrr=-0.01), False),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, mrr={}), False),
    Case(TOPIC_CUSTOMERS, _with(CUSTOMER, segment=3), False),
    Case(TOPIC_CUSTOMERS, b"true", False),
]

DECODER_ONLY: list[DecoderOnly] = [
    # A custom scale's bounds against the score (JSON Schema cannot compare two fields).
    DecoderOnly(
        TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=1, scale_min=3), "score_out_of_scale"
    ),
    DecoderOnly(
        TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=11, scale_max=10), "score_out_of_scale"
    ),
    DecoderOnly(
        TOPIC_SURVEYS,
        _with(SURVEY, survey="ces", score=11, scale_min=0, scale_max=10),
        "score_out_of_scale",
    ),
    DecoderOnly(
        TOPIC_SURVEYS, _with(SURVEY, survey="ces", score=4, scale_min=5, scale_max=3), "bad_value"
    ),
    DecoderOnly(
        TOPIC_SURVEYS, _with(SURVEY, survey="csat", score=3, scale_min=3, scale_max=3), "bad_value"
    ),
    # Times on the edge days whose offset moves them outside [1970, 9999] in UTC.
    DecoderOnly(TOPIC_SURVEYS, _with(SURVEY, occurred_at="1970-01-01T00:30:00+01:00"), "bad_time"),
    DecoderOnly(TOPIC_SUPPORT, _with(SUPPORT, opened_at="9999-12-31T23:59:59-01:00"), "bad_time"),
    # Lone UTF-16 surrogate escapes: valid JSON text, but not Unicode; orjson refuses them.
    DecoderOnly(
        TOPIC_SURVEYS,
        b'{"response_id":"r-1","customer_id":"c-1","survey":"nps",'
        b'"score":9,"occurred_at":0,"comment":"\\ud800"}',
        "not_json",
    ),
]


def cross_field_ok(topic: str, payload: object) -> bool:
    """The decoder-only survey scale rules, as an oracle for generated (hypothesis) payloads.

    Only meaningful when the payload passes the schema (so all fields have their types).
    """
    if topic != TOPIC_SURVEYS or not isinstance(payload, dict):
        return True
    defaults = {"csat": (1, 5), "ces": (1, 7)}.get(payload.get("survey"))
    if defaults is None:
        return True
    lo = payload.get("scale_min")
    hi = payload.get("scale_max")
    lo = defaults[0] if lo is None else lo
    hi = defaults[1] if hi is None else hi
    score = payload.get("score")
    try:
        return bool(lo < hi and lo <= score <= hi)
    except TypeError:  # a wrong type: the schema rejects it already
        return True
