"""Decode and validate raw input messages into typed events.

This is the per-event hot path, so the rules of ``schemas/*.json`` are written out by hand
(``orjson.loads``, direct dict lookups, one precompiled regex) instead of running jsonschema.
``tests/unit/test_schema_agreement.py`` keeps the two in step; the few checks JSON Schema
cannot express are listed in ``schemas/README.md``.

``decode`` never raises on any bytes: a bad message becomes a ``Rejection`` whose ``reason`` is
the dead-letter reason code. Conventions shared with the schemas:

- ``null`` means absent: a required field that is ``null`` is ``missing_field``; an optional
  one that is ``null`` takes its default.
- Integer fields accept any JSON number without a fractional part (``9`` and ``9.0`` are the
  same JSON number, and JSON Schema's ``integer`` accepts both); ``true``/``false`` are not
  numbers.
- Times are RFC 3339 strings with an offset, or integer epoch milliseconds, and must lie in
  [1970-01-01T00:00:00Z, 9999-12-31T23:59:59.999Z]. Fractions beyond milliseconds are truncated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, cast

import orjson

TOPIC_SURVEYS = "cx.survey-responses"
TOPIC_SUPPORT = "cx.support-interactions"
TOPIC_CANCELLATIONS = "cx.cancellations"
TOPIC_CUSTOMERS = "cx.customers"

MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_DETAIL = 300

DEFAULT_SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
SUPPORT_STATUSES = frozenset({"opened", "responded", "resolved", "reopened"})
CUSTOMER_STATUSES = frozenset({"active", "cancelled"})

SURVEY_DIMS = ("channel", "touchpoint", "segment", "region", "plan")
SUPPORT_DIMS = ("channel", "segment", "region", "priority")
CANCELLATION_DIMS = ("segment", "region", "plan", "channel")
CUSTOMER_DIMS = ("segment", "region", "plan")


# NamedTuples, not frozen dataclasses: a frozen dataclass's __init__ sets every field through
# object.__setattr__, 1.9 us for a Survey's 9 fields on this machine against 0.45 us for a
# NamedTuple (one per event); both are immutable.
class Survey(NamedTuple):
    event_id: str  # response_id
    customer_id: str
    survey: str  # "nps" | "csat" | "ces"
    score: int
    t_ms: int  # occurred_at as epoch ms
    dims: dict[str, str]  # channel, touchpoint, segment, region, plan; absent -> "unknown"
    comment: str | None
    scale_min: int  # the survey's default when absent
    scale_max: int


class Support(NamedTuple):
    event_id: str  # default f"{interaction_id}:{status}:{occurred_at as written}"
    interaction_id: str
    customer_id: str
    status: str  # opened | responded | resolved | reopened
    t_ms: int
    opened_at_ms: int | None
    dims: dict[str, str]  # channel, segment, region, priority


class Cancellation(NamedTuple):
    event_id: str  # cancellation_id
    customer_id: str
    t_ms: int
    mrr: float  # 0.0 when absent
    reason: str | None
    dims: dict[str, str]  # segment, region, plan, channel


class Customer(NamedTuple):
    customer_id: str
    status: str  # active | cancelled
    started_at_ms: int | None
    mrr: float
    dims: dict[str, str]  # segment, region, plan


class Rejection(NamedTuple):
    reason: str  # machine code (the dead-letter reason)
    detail: str  # one human-readable line, at most MAX_DETAIL characters


Event = Survey | Support | Cancellation | Customer

# RFC 3339 date-time (section 5.6) with the year limited to 1970-9999. Same rules as
# rfc3339-validator, which jsonschema uses for format "date-time": lower-case t/z allowed, any
# number of fraction digits, no leap second (:60). fromisoformat() then checks the day of the
# month; the regex first, because fromisoformat() also accepts non-RFC 3339 forms.
_RFC3339 = re.compile(
    r"(?:19[7-9][0-9]|[2-9][0-9]{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class _Invalid(Exception):
    """Raised inside the field readers; turned into a Rejection by decode()."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _reject(reason: str, detail: str) -> Rejection:
    detail = detail.replace("\n", " ").replace("\r", " ")
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 3] + "..."
    return Rejection(reason, detail)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _kind(value: object) -> str:
    return _KINDS.get(type(value), "number")


def _rfc3339_ms(text: str) -> int | None:
    if _RFC3339.fullmatch(text) is None:
        return None
    if text[10] == "t" or text[-1] == "z":  # fromisoformat wants upper case
        text = text.upper()
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:  # the regex passed, so the day does not exist (2026-02-30)
        return None
    ms = (instant - _EPOCH) // _ONE_MS  # exact integer arithmetic, truncates sub-ms digits
    return ms if 0 <= ms <= MAX_TIME_MS else None


def parse_time(value: object) -> int | None:
    """Epoch milliseconds of an RFC 3339 string (with offset) or integer epoch ms, else None."""
    if isinstance(value, str):
        return _rfc3339_ms(value)
    ms = _as_int(value)
    return ms if ms is not None and 0 <= ms <= MAX_TIME_MS else None


def _as_int(value: object) -> int | None:
    """An int, or a float without fraction (9.0 is the JSON number 9); never a bool."""
    if isinstance(value, int):
        return None if isinstance(value, bool) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# --- field readers: return the value or raise _Invalid ------------------------------------


def _id(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, str) and value:
        return value
    if value is None:
        raise _Invalid("missing_field", f"{key} is required")
    if not isinstance(value, str):
        raise _Invalid("wrong_type", f"{key} must be a string, got {_kind(value)}")
    raise _Invalid("bad_value", f"{key} must not be empty")


def _enum(obj: dict[str, object], key: str, allowed: frozenset[str]) -> str:
    value = _id(obj, key)
    if value not in allowed:
        raise _Invalid("bad_value", f"{key} must be one of {sorted(allowed)}, got {_show(value)}")
    return value


def _int(obj: dict[str, object], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    number = _as_int(value)
    if number is not None:
        return number
    raise _Invalid("wrong_type", f"{key} must be an integer, got {_show(value)}")


def _time(obj: dict[str, object], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) and _as_int(value) is None:
        raise _Invalid(
            "wrong_type",
            f"{key} must be an RFC 3339 string or integer epoch ms, got {_show(value)}",
        )
    ms = parse_time(value)
    if ms is None:
        raise _Invalid(
            "bad_time",
            f"{key} {_show(value)} is not an RFC 3339 time with offset or epoch ms in 1970..9999",
        )
    return ms


def _required_time(obj: dict[str, object], key: str) -> int:
    ms = _time(obj, key)
    if ms is None:
        raise _Invalid("missing_field", f"{key} is required")
    return ms


def _text(obj: dict[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _Invalid("wrong_type", f"{key} must be a string, got {_kind(value)}")


def _mrr(obj: dict[str, object]) -> float:
    value = obj.get("mrr")
    if isinstance(value, float | int) and not isinstance(value, bool):
        if value < 0:
            raise _Invalid("bad_value", f"mrr must be >= 0, got {_show(value)}")
        return float(value) + 0.0  # + 0.0 turns -0.0 into 0.0
    if value is None:
        return 0.0
    raise _Invalid("wrong_type", f"mrr must be a number, got {_kind(value)}")


def _dims(obj: dict[str, object], keys: tuple[str, ...]) -> dict[str, str]:
    dims = {}
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str):
            dims[key] = value or "unknown"
        elif value is None:
            dims[key] = "unknown"
        else:
            raise _Invalid("wrong_type", f"{key} must be a string, got {_kind(value)}")
    return dims


def _not_future(t_ms: int, now_ms: int, max_future_ms: int) -> None:
    """Checked last, so that a future event with another problem is rejected for that one."""
    if t_ms - now_ms > max_future_ms:
        raise _Invalid(
            "future",
            f"occurred_at is {t_ms - now_ms} ms ahead of the wall clock (max {max_future_ms})",
        )


# --- one builder per topic ---------------------------------------------------------------


def _fast_time(value: object) -> int | None:
    """:func:`parse_time` of a well-formed ``occurred_at`` (an RFC 3339 string or an int in
    range), else None: the full reader then decides, with its reason."""
    if type(value) is str:
        return _rfc3339_ms(value)
    if type(value) is int and 0 <= value <= MAX_TIME_MS:
        return value
    return None


# The fast paths below read a well-formed event in one function (the per-field readers cost
# ~1 us of calls per event, ~25% of decoding a survey answer); anything else, or anything in
# doubt, goes to the full reader (``_survey_full``...), which checks the fields in its own
# order and names the first problem. A fast path accepts only what the full reader accepts,
# with the same result (tests/unit/test_events.py runs the corpus and fuzzed events through
# both), and raises only what the full reader would raise at that point: the checks before it
# are the full reader's, passed.


def _survey(obj: dict[str, object], now_ms: int, max_future_ms: int) -> Survey:
    get = obj.get
    event_id, customer_id, survey, score = (
        get("response_id"), get("customer_id"), get("survey"), get("score"),
    )  # fmt: skip
    if (
        type(event_id) is str
        and event_id
        and type(customer_id) is str
        and customer_id
        and type(survey) is str
        and type(score) is int
        and get("scale_min") is None
        and get("scale_max") is None
    ):
        scale = DEFAULT_SCALES.get(survey)
        if scale is not None and scale[0] <= score <= scale[1]:
            t_ms = _fast_time(get("occurred_at"))
            if t_ms is not None:
                dims = _dims(obj, SURVEY_DIMS)
                comment = _text(obj, "comment")
                _not_future(t_ms, now_ms, max_future_ms)
                lo, hi = scale
                return Survey(event_id, customer_id, survey, score, t_ms, dims, comment, lo, hi)
    return _survey_full(obj, now_ms, max_future_ms)


def _survey_full(obj: dict[str, object], now_ms: int, max_future_ms: int) -> Survey:
    event_id = _id(obj, "response_id")
    customer_id = _id(obj, "customer_id")
    survey = obj.get("survey")
    if survey is None:
        raise _Invalid("missing_field", "survey is required")
    if not isinstance(survey, str):
        raise _Invalid("wrong_type", f"survey must be a string, got {_kind(survey)}")
    scale = DEFAULT_SCALES.get(survey)
    if scale is None:
        raise _Invalid("unknown_survey", f"survey must be nps, csat or ces, got {_show(survey)}")
    score = _int(obj, "score")
    if score is None:
        raise _Invalid("missing_field", "score is required")
    t_ms = _required_time(obj, "occurred_at")
    lo = _int(obj, "scale_min")
    hi = _int(obj, "scale_max")
    if survey == "nps":
        if (lo is not None and lo != 0) or (hi is not None and hi != 10):
            raise _Invalid("bad_value", f"nps is always on 0-10, got scale {lo}..{hi}")
        lo, hi = scale
    else:
        lo = scale[0] if lo is None else lo
        hi = scale[1] if hi is None else hi
        if lo >= hi:
            raise _Invalid("bad_value", f"scale_min must be < scale_max, got {lo}..{hi}")
    if not lo <= score <= hi:
        raise _Invalid("score_out_of_scale", f"{survey} score {score} is outside {lo}..{hi}")
    dims = _dims(obj, SURVEY_DIMS)
    comment = _text(obj, "comment")
    _not_future(t_ms, now_ms, max_future_ms)
    return Survey(event_id, customer_id, survey, score, t_ms, dims, comment, lo, hi)


def _support(obj: dict[str, object], now_ms: int, max_future_ms: int) -> Support:
    get = obj.get
    interaction_id, event_id, customer_id, status, written = (
        get("interaction_id"), get("event_id"), get("customer_id"), get("status"),
        get("occurred_at"),
    )  # fmt: skip
    if (
        type(interaction_id) is str
        and interaction_id
        and (event_id is None or (type(event_id) is str and event_id))
        and type(customer_id) is str
        and customer_id
        and type(status) is str
        and status in SUPPORT_STATUSES
    ):
        t_ms = _fast_time(written)
        opened = get("opened_at")
        opened_at_ms = None if opened is None else _fast_time(opened)
        if t_ms is not None and (opened is None or opened_at_ms is not None):
            dims = _dims(obj, SUPPORT_DIMS)
            if event_id is None:  # occurred_at as written: the string itself, or the integer
                event_id = f"{interaction_id}:{status}:{written}"
            _not_future(t_ms, now_ms, max_future_ms)
            return Support(
                cast(str, event_id), interaction_id, customer_id, cast(str, status), t_ms,
                opened_at_ms, dims,
            )  # fmt: skip
    return _support_full(obj, now_ms, max_future_ms)


def _support_full(obj: dict[str, object], now_ms: int, max_future_ms: int) -> Support:
    interaction_id = _id(obj, "interaction_id")
    event_id = obj.get("event_id")
    if event_id is not None:
        event_id = _id(obj, "event_id")
    customer_id = _id(obj, "customer_id")
    status = _enum(obj, "status", SUPPORT_STATUSES)
    t_ms = _required_time(obj, "occurred_at")
    opened_at_ms = _time(obj, "opened_at")
    dims = _dims(obj, SUPPORT_DIMS)
    if event_id is None:
        written = obj["occurred_at"]  # as written: the string itself, or the integer
        event_id = (
            f"{interaction_id}:{status}:{written if isinstance(written, str) else _as_int(written)}"
        )
    _not_future(t_ms, now_ms, max_future_ms)
    return Support(event_id, interaction_id, customer_id, status, t_ms, opened_at_ms, dims)


def _cancellation(obj: dict[str, object], now_ms: int, max_future_ms: int) -> Cancellation:
    event_id = _id(obj, "cancellation_id")
    customer_id = _id(obj, "customer_id")
    t_ms = _required_time(obj, "occurred_at")
    mrr = _mrr(obj)
    reason = _text(obj, "reason")
    dims = _dims(obj, CANCELLATION_DIMS)
    _not_future(t_ms, now_ms, max_future_ms)
    return Cancellation(event_id, customer_id, t_ms, mrr, reason, dims)


def _customer(obj: dict[str, object], now_ms: int, max_future_ms: int) -> Customer:
    # No future check: a customer record is state, and started_at may be scheduled ahead.
    return Customer(
        _id(obj, "customer_id"),
        _enum(obj, "status", CUSTOMER_STATUSES),
        _time(obj, "started_at"),
        _mrr(obj),
        _dims(obj, CUSTOMER_DIMS),
    )


_BUILDERS: dict[str, Callable[[dict[str, object], int, int], Event]] = {
    TOPIC_SURVEYS: _survey,
    TOPIC_SUPPORT: _support,
    TOPIC_CANCELLATIONS: _cancellation,
    TOPIC_CUSTOMERS: _customer,
}


def decode(
    topic: str,
    raw: bytes | None,
    now_ms: int,
    *,
    max_future_ms: int = 300_000,
    max_bytes: int = 65_536,
) -> Event | Rejection:
    """Decode one input message of ``topic``; never raises.

    ``now_ms`` is the wall clock (injected so that tests and replays are deterministic). A
    tombstone on the compacted ``cx.customers`` topic arrives as ``raw=None`` and is rejected
    as ``empty``: the customers agent handles tombstones before calling this.
    """
    build = _BUILDERS.get(topic)
    if build is None:
        return _reject("unknown_topic", f"no decoder for topic {_show(topic)}")
    if not raw:
        return _reject("empty", "empty message (no value)")
    if len(raw) > max_bytes:
        return _reject("too_large", f"message is {len(raw)} bytes (max {max_bytes})")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # also invalid UTF-8, NaN/Infinity, depth > 1024
        return _reject("not_json", f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return _reject("not_object", f"expected a JSON object, got {_kind(obj)}")
    try:
        return build(obj, now_ms, max_future_ms)
    except _Invalid as exc:
        return _reject(exc.reason, exc.detail)
