"""Labelled adversarial input for the fuzz tests: every item is either a valid event (must be
counted ``applied``/``late``) or malformed *by construction* (must be dead-lettered).

Driven by one ``random.Random``, so the live test (``tests/integration/test_fuzz.py``) replays a
seed and the pure property test (``tests/unit/test_fold_fuzz.py``) hands in hypothesis'
``st.randoms()``. Valid ids are unique per item (no duplicates); valid event times lie in the
last half hour of ``now_ms`` (never ``too_old`` for windows >= 1h, never ``future``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from streams.events import TOPIC_CANCELLATIONS, TOPIC_CUSTOMERS, TOPIC_SUPPORT, TOPIC_SURVEYS

TOPICS = (TOPIC_SURVEYS, TOPIC_SUPPORT, TOPIC_CANCELLATIONS, TOPIC_CUSTOMERS)
MAX_BYTES = 65_536  # the worker's default CX_MAX_MESSAGE_BYTES
DEEP = 10_000  # nesting depth of the deep payloads (orjson stops at 1024)

Json = dict[str, Any]


@dataclass(frozen=True)
class Item:
    topic: str
    key: bytes | None
    value: bytes | None
    valid: bool
    kind: str  # what the generator did, for failure messages


# -- valid events ----------------------------------------------------------------------------

_UNICODE = ("ünïcødé", "日本語", "emoji 😀🔥", "rtl שלום", "tab\tnew\nline", "nul\u0000byte",
            "a|b=c+d", "  padded  ", "", "x" * 300)  # fmt: skip


def _time(rng: random.Random, now_ms: int) -> Any:
    t = now_ms - rng.randint(1_000, 1_800_000)
    form = rng.randrange(4)
    if form == 0:
        return t
    if form == 1:
        return float(t)  # 9.0 is the JSON number 9
    from datetime import UTC, datetime

    text = datetime.fromtimestamp(t / 1000, UTC).isoformat(timespec="milliseconds")
    text = text.replace("+00:00", "Z")
    return text.lower() if form == 2 else text


def _dims(rng: random.Random, names: tuple[str, ...]) -> Json:
    out: Json = {}
    for name in names:
        r = rng.random()
        if r < 0.3:
            continue
        out[name] = rng.choice(_UNICODE) if r < 0.4 else f"{name}-{rng.randrange(4)}"
    return out


def valid_event(rng: random.Random, topic: str, now_ms: int, uid: str) -> Json:
    cid = f"c-{rng.randrange(200)}"
    if topic == TOPIC_SURVEYS:
        survey = rng.choice(("nps", "csat", "ces"))
        lo, hi = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[survey]
        ev: Json = {"response_id": uid, "customer_id": cid, "survey": survey,
                    "score": rng.randint(lo, hi), "occurred_at": _time(rng, now_ms)}  # fmt: skip
        ev.update(_dims(rng, ("channel", "touchpoint", "segment", "region", "plan")))
        if rng.random() < 0.3:
            ev["comment"] = rng.choice(_UNICODE)
        return ev
    if topic == TOPIC_SUPPORT:
        ev = {"interaction_id": uid, "customer_id": cid,
              "status": rng.choice(("opened", "responded", "resolved", "reopened")),
              "occurred_at": _time(rng, now_ms)}  # fmt: skip
        if rng.random() < 0.5:
            ev["opened_at"] = now_ms - 3_600_000
        ev.update(_dims(rng, ("channel", "segment", "region", "priority")))
        return ev
    if topic == TOPIC_CANCELLATIONS:
        ev = {"cancellation_id": uid, "customer_id": cid, "occurred_at": _time(rng, now_ms)}
        if rng.random() < 0.7:
            ev["mrr"] = rng.choice((0, 0.0, 12.5, 1e6, rng.randint(1, 5000)))
        ev.update(_dims(rng, ("segment", "region", "plan", "channel")))
        return ev
    ev = {"customer_id": cid, "status": rng.choice(("active", "cancelled"))}
    if rng.random() < 0.5:
        ev["started_at"] = _time(rng, now_ms)
    ev.update(_dims(rng, ("segment", "region", "plan")))
    return ev


def _valid_variant(rng: random.Random, topic: str, ev: Json) -> tuple[Json, str]:
    """Unknown fields, odd-but-legal values: still a valid event."""
    r = rng.randrange(5)
    if r == 0:
        ev["x_unknown"] = rng.choice(([1, [2, [3]]], {"nested": {"a": None}}, "x", None, 1e308))
        return ev, "unknown_field"
    if r == 1:
        ev["x_blob"] = "z" * rng.randint(1_000, MAX_BYTES - 6_000)  # large, under the cap
        return ev, "large_ok"
    if r == 2:
        for name in ("channel", "segment", "region"):
            ev[name] = None  # null = absent
        return ev, "null_optional"
    return ev, "plain"


# -- malformed -----------------------------------------------------------------------------------

_REQUIRED = {
    TOPIC_SURVEYS: ("response_id", "customer_id", "survey", "score", "occurred_at"),
    TOPIC_SUPPORT: ("interaction_id", "customer_id", "status", "occurred_at"),
    TOPIC_CANCELLATIONS: ("cancellation_id", "customer_id", "occurred_at"),
    TOPIC_CUSTOMERS: ("customer_id", "status"),
}
_STRINGS = {  # required string fields and typed optional ones, per topic
    TOPIC_SURVEYS: ("response_id", "customer_id", "survey", "channel", "segment", "comment"),
    TOPIC_SUPPORT: ("interaction_id", "customer_id", "status", "event_id", "priority"),
    TOPIC_CANCELLATIONS: ("cancellation_id", "customer_id", "reason", "plan"),
    TOPIC_CUSTOMERS: ("customer_id", "status", "segment"),
}
_TIMES = {
    TOPIC_SURVEYS: ("occurred_at",),
    TOPIC_SUPPORT: ("occurred_at", "opened_at"),
    TOPIC_CANCELLATIONS: ("occurred_at",),
    TOPIC_CUSTOMERS: ("started_at",),
}
_NOT_STRING = (1, 2.5, True, False, [], ["a"], {}, {"a": "b"})
_NOT_TIME = (True, [], {}, 1.5, {"t": 1})
_BAD_TIME = ("yesterday", "2026-02-30T00:00:00Z", "2026-11-22 10:00:00", "2026-11-22T10:00:00",
             "2026-11-22T25:00:00Z", -5, 1e20, "", "9999-99-99T00:00:00Z")  # fmt: skip


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _mutations(topic: str, big: bool) -> list[Callable[[random.Random, Json], tuple[bytes, str]]]:
    def dump(ev: Json) -> bytes:
        return orjson.dumps(ev)

    def wrong_type(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        name = rng.choice(_STRINGS[topic])
        ev[name] = rng.choice(_NOT_STRING)
        return dump(ev), f"wrong_type:{name}"

    def missing(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        name = rng.choice(_REQUIRED[topic])
        if rng.random() < 0.5:
            ev.pop(name, None)
        else:
            ev[name] = None
        return dump(ev), f"missing:{name}"

    def empty_id(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        name = rng.choice([n for n in _REQUIRED[topic] if n.endswith("_id")])
        ev[name] = ""
        return dump(ev), f"empty:{name}"

    def bad_time(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        name = rng.choice(_TIMES[topic])
        ev[name] = rng.choice(_BAD_TIME + _NOT_TIME)
        return dump(ev), f"bad_time:{name}"

    def nan(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        field = "score" if topic == TOPIC_SURVEYS else "mrr"
        ev[field] = 7
        literal = rng.choice((b"NaN", b"Infinity", b"-Infinity", b"nan", b"1e999999"))
        text = dump(ev).replace(f'"{field}":7'.encode(), f'"{field}":'.encode() + literal)
        # 1e999999 is valid JSON that orjson reads as inf: a wrong type/value either way
        return text, f"nan:{literal.decode()}"

    def invalid_utf8(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        raw = dump(ev).replace(b'"customer_id":"', b'"customer_id":"\xff\xfe\xc3(', 1)
        return raw, "invalid_utf8"

    def deep(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        if rng.random() < 0.5:
            return _deep(DEEP).encode(), "deep:whole"
        raw = dump({**ev, "x_deep": 0}).replace(b'"x_deep":0', f'"x_deep":{_deep(DEEP)}'.encode())
        return raw, "deep:field"

    def too_large(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        size = rng.choice((MAX_BYTES + 1, 200_000) + ((1_048_576,) if big else ()))
        ev["x_pad"] = ""
        base = len(dump(ev))
        ev["x_pad"] = "p" * max(0, size - base)
        return dump(ev), f"too_large:{size}"

    def not_object(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        return rng.choice((b"[1,2,3]", b'"a string"', b"42", b"null", b"true", b"[]",
                           dump([ev]))), "not_object"  # fmt: skip

    def not_json(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        raw = dump(ev)
        return rng.choice((raw[: len(raw) // 2], b"{not json", b"{'a': 1}", raw + b"}",
                           raw.replace(b":", b"=", 1), b"\x00\x01\x02", b"   ")), "not_json"  # fmt: skip

    def binary(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        n = rng.choice((1, 3, 17, 256, 4096))
        return bytes(rng.getrandbits(8) for _ in range(n)), "binary"

    def bad_value(rng: random.Random, ev: Json) -> tuple[bytes, str]:
        if topic == TOPIC_SURVEYS:
            change = rng.choice(({"score": 11, "survey": "nps"}, {"score": -1},
                                 {"survey": "foo"}, {"survey": "csat", "score": 9},
                                 {"survey": "nps", "scale_max": 5},
                                 {"survey": "csat", "scale_min": 5, "scale_max": 5},
                                 {"score": 5.5}, {"occurred_at": "3000-01-01T00:00:00Z"}))  # fmt: skip
        elif topic == TOPIC_SUPPORT:
            change = rng.choice(({"status": "closed"}, {"status": "OPENED"},
                                 {"occurred_at": "3000-01-01T00:00:00Z"}, {"event_id": ""}))  # fmt: skip
        elif topic == TOPIC_CANCELLATIONS:
            change = rng.choice(({"mrr": -1}, {"mrr": "12"}, {"mrr": True},
                                 {"occurred_at": "3000-01-01T00:00:00Z"}))  # fmt: skip
        else:
            change = rng.choice(({"status": "gone"}, {"mrr": -0.5}, {"status": None}))
        ev.update(change)
        return dump(ev), f"bad_value:{sorted(change)}"

    return [wrong_type, missing, empty_id, bad_time, nan, invalid_utf8, deep, too_large,
            not_object, not_json, binary, bad_value]  # fmt: skip


def _key(rng: random.Random, ev: Json | None) -> bytes | None:
    r = rng.random()
    if r < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 12))) + b"\xff"  # not UTF-8
    if r < 0.15:
        return None
    cid = ev.get("customer_id") if ev else None
    return (cid if isinstance(cid, str) else "c-x").encode()


def item(rng: random.Random, topic: str, now_ms: int, uid: str, *, malformed: bool,
         big: bool = True) -> Item:  # fmt: skip
    ev = valid_event(rng, topic, now_ms, uid)
    key = _key(rng, ev)
    if not malformed:
        ev, kind = _valid_variant(rng, topic, ev)
        if topic == TOPIC_CUSTOMERS and key is not None and rng.random() < 0.1:
            return Item(topic, key, None, True, "customer_tombstone")  # a delete: applied
        return Item(topic, key, orjson.dumps(ev), True, kind)
    if rng.random() < 0.06:
        # A tombstone is `empty` everywhere, except a keyed one on cx.customers (a delete); an
        # empty key is no key (Kafka clients refuse a record with neither key nor value).
        return Item(topic, b"" if topic == TOPIC_CUSTOMERS else key or b"k", None, False,
                    "tombstone")  # fmt: skip
    mutate = rng.choice(_mutations(topic, big))
    value, kind = mutate(rng, ev)
    return Item(topic, key, value, False, kind)


def items(seed: int | random.Random, n: int, now_ms: int, *, malformed_share: float = 0.5,
          big: bool = True, run: str = "fz") -> list[Item]:  # fmt: skip
    """``n`` items over all four input topics, valid and malformed interleaved."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    out = []
    for i in range(n):
        topic = TOPICS[rng.randrange(4)]
        malformed = rng.random() < malformed_share
        out.append(item(rng, topic, now_ms, f"{run}-{i}", malformed=malformed, big=big))
    return out
