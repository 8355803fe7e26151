"""A seeded mixed input set: valid events, duplicates, late events, malformed and out-of-range
records, with the ground truth (:class:`tests.oracle.Truth`) and the expected dead letters."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.oracle import Truth

SURVEYS = "cx.survey-responses"
SUPPORT = "cx.support-interactions"
CANCELLATIONS = "cx.cancellations"
CUSTOMERS = "cx.customers"

SEGMENTS = ("enterprise", "mid-market", "smb")
CHANNELS = ("chat", "email", "phone")
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR

Message = tuple[str, bytes, bytes | None]


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@dataclass
class EventSet:
    phase1: list[Message] = field(default_factory=list)  # valid history, in time order
    phase2: list[Message] = field(default_factory=list)  # duplicates, late, malformed...
    truth: Truth = field(default_factory=Truth)
    dead: Counter[str] = field(default_factory=Counter)  # expected dead-letter reasons
    duplicates: int = 0

    @property
    def total(self) -> int:
        return len(self.phase1) + len(self.phase2)


def _time(rng: random.Random, t: int) -> Any:
    return t if rng.random() < 0.3 else rfc3339(t)


def build(seed: int, now_ms: int, n_surveys: int = 1500, n_tickets: int = 150) -> EventSet:
    rng = random.Random(seed)
    es = EventSet()
    top = now_ms - MIN  # latest event time; the watermark

    def when() -> int:
        r = rng.random()
        span = 5 * MIN if r < 0.35 else HOUR if r < 0.65 else DAY if r < 0.85 else 9 * DAY
        return top - rng.randrange(span)

    customers = [f"c{i:04d}" for i in range(300)]
    seg_of = {c: SEGMENTS[i % 3] for i, c in enumerate(customers)}
    timed: list[tuple[int, Message, tuple[str, dict[str, Any]] | None]] = []

    # customers: the active base (status changes for a few)
    for c in customers:
        rec = {"customer_id": c, "status": "active", "started_at": rfc3339(top - 40 * DAY),
               "segment": seg_of[c], "region": "emea", "plan": "pro", "mrr": 100.0}  # fmt: skip
        timed.append((top - 30 * DAY, (CUSTOMERS, c.encode(), orjson.dumps(rec)),
                      ("customers", {"customer_id": c, "status": "active",
                                     "dims": {"segment": seg_of[c], "region": "emea", "plan": "pro"}})))  # fmt: skip
    for c in customers[:20]:
        rec = {"customer_id": c, "status": "cancelled", "segment": seg_of[c], "region": "emea",
               "plan": "pro", "mrr": 100.0}  # fmt: skip
        timed.append((top - 29 * DAY, (CUSTOMERS, c.encode(), orjson.dumps(rec)),
                      ("customers", {"customer_id": c, "status": "cancelled",
                                     "dims": {"segment": seg_of[c], "region": "emea", "plan": "pro"}})))  # fmt: skip

    for i in range(n_surveys):
        c = rng.choice(customers)
        survey = rng.choice(("nps", "nps", "csat", "ces"))
        lo, hi = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[survey]
        custom = survey != "nps" and rng.random() < 0.1
        if custom:
            lo, hi = (1, 10) if survey == "csat" else (1, 5)
        bias = {"enterprise": 0.7, "mid-market": 0.5, "smb": 0.35}[seg_of[c]]
        score = hi - rng.randrange(hi - lo + 1) if rng.random() < bias else rng.randint(lo, hi)
        t = when()
        channel = rng.choice(CHANNELS)
        ev: dict[str, Any] = {"response_id": f"r{i}", "customer_id": c, "survey": survey,
                              "score": score, "occurred_at": _time(rng, t), "channel": channel,
                              "segment": seg_of[c]}  # fmt: skip
        if custom:
            ev["scale_min"], ev["scale_max"] = lo, hi
        if rng.random() < 0.2:
            ev["comment"] = "slow refund" if score < hi - 2 else "great"
        truth = {"survey": survey, "score": score, "lo": lo, "hi": hi, "t": t,
                 "dims": {"segment": seg_of[c], "channel": channel, "touchpoint": "unknown",
                          "region": "unknown", "plan": "unknown"}}  # fmt: skip
        timed.append((t, (SURVEYS, c.encode(), orjson.dumps(ev)), ("surveys", truth)))

    for i in range(n_tickets):
        c = rng.choice(customers)
        t0 = when() - 2 * HOUR
        channel = rng.choice(CHANNELS)
        steps = [("opened", t0)]
        steps.append(("responded", t0 + rng.randrange(30_000, 3 * HOUR)))
        if rng.random() < 0.8:
            steps.append(("resolved", steps[-1][1] + rng.randrange(60_000, 6 * HOUR)))
            if rng.random() < 0.15:
                steps.append(("reopened", steps[-1][1] + rng.randrange(60_000, HOUR)))
        skip_open = rng.random() < 0.1  # a responded/resolved that stands on its own
        for status, t in steps:
            if t > top:
                break
            if status == "opened" and skip_open:
                continue
            ev = {"interaction_id": f"i{i}", "customer_id": c, "status": status,
                  "occurred_at": _time(rng, t), "channel": channel, "segment": seg_of[c],
                  "priority": "p2"}  # fmt: skip
            truth = {"interaction_id": f"i{i}", "status": status, "t": t,
                     "dims": {"channel": channel, "segment": seg_of[c], "region": "unknown",
                              "priority": "p2"}}  # fmt: skip
            if status != "opened" and (skip_open or rng.random() < 0.5):
                ev["opened_at"] = rfc3339(t0)
                truth["opened_at"] = t0
            timed.append((t, (SUPPORT, c.encode(), orjson.dumps(ev)), ("support", truth)))

    for i in range(60):
        c = rng.choice(customers)
        t = when()
        mrr = round(rng.uniform(10, 500), 2)
        ev = {"cancellation_id": f"x{i}", "customer_id": c, "occurred_at": _time(rng, t),
              "mrr": mrr, "segment": seg_of[c], "channel": rng.choice(CHANNELS)}  # fmt: skip
        truth = {"t": t, "mrr": mrr, "dims": {"segment": seg_of[c], "region": "unknown",
                                              "plan": "unknown", "channel": ev["channel"]}}  # fmt: skip
        timed.append((t, (CANCELLATIONS, c.encode(), orjson.dumps(ev)), ("cancellations", truth)))

    # Phase 1: all valid events in event-time order, so the only late events are phase 2's.
    timed.sort(key=lambda item: item[0])
    # Hold back a late slice: older than the watermark by > 5 min, sent in phase 2.
    late = [
        x for x in timed if x[2] and x[2][0] == "surveys" and top - 50 * MIN < x[0] < top - 20 * MIN
    ]
    late = late[: len(late) // 3]
    late_ids = {id(x) for x in late}
    for _t, msg, (kind, truth) in [x for x in timed if id(x) not in late_ids]:  # type: ignore[misc]
        es.phase1.append(msg)
        getattr(es.truth, kind).append(truth)

    # Phase 2, after phase 1 is folded (every partition has a recent watermark).
    for _t, msg, (kind, truth) in late:  # type: ignore[misc]
        es.phase2.append(msg)
        getattr(es.truth, kind).append(truth)
    for msg in rng.sample(es.phase1, 40):  # duplicates: same id, same key
        if msg[0] != CUSTOMERS:
            es.phase2.append(msg)
            es.duplicates += 1
    c = customers[0]
    key = c.encode()
    old = top - 31 * DAY
    bad: list[tuple[str, str, bytes | None]] = [
        (SURVEYS, "not_json", b"{not json"),
        (SURVEYS, "not_json", b"\xff\xfe\x00garbage"),
        (SURVEYS, "not_json", b'{"score": NaN}'),
        (SURVEYS, "not_object", b"[1, 2, 3]"),
        (SURVEYS, "empty", b""),
        (SURVEYS, "empty", None),
        (SURVEYS, "too_large", b'{"pad": "' + b"x" * 70_000 + b'"}'),
        (SURVEYS, "missing_field", orjson.dumps({"customer_id": c, "survey": "nps", "score": 5, "occurred_at": rfc3339(top)})),
        (SURVEYS, "wrong_type", orjson.dumps({"response_id": "b1", "customer_id": c, "survey": "nps", "score": "9", "occurred_at": rfc3339(top)})),
        (SURVEYS, "unknown_survey", orjson.dumps({"response_id": "b2", "customer_id": c, "survey": "xyz", "score": 5, "occurred_at": rfc3339(top)})),
        (SURVEYS, "score_out_of_scale", orjson.dumps({"response_id": "b3", "customer_id": c, "survey": "nps", "score": 11, "occurred_at": rfc3339(top)})),
        (SURVEYS, "score_out_of_scale", orjson.dumps({"response_id": "b4", "customer_id": c, "survey": "csat", "score": 0, "occurred_at": rfc3339(top)})),
        (SURVEYS, "bad_time", orjson.dumps({"response_id": "b5", "customer_id": c, "survey": "nps", "score": 5, "occurred_at": "yesterday"})),
        (SURVEYS, "bad_time", orjson.dumps({"response_id": "b6", "customer_id": c, "survey": "nps", "score": 5, "occurred_at": "2026-11-22T10:00:00"})),
        (SURVEYS, "future", orjson.dumps({"response_id": "b7", "customer_id": c, "survey": "nps", "score": 5, "occurred_at": rfc3339(now_ms + 2 * HOUR)})),
        (SURVEYS, "too_old", orjson.dumps({"response_id": "b8", "customer_id": c, "survey": "nps", "score": 5, "occurred_at": old})),
        (SUPPORT, "bad_value", orjson.dumps({"interaction_id": "ib", "customer_id": c, "status": "closed", "occurred_at": rfc3339(top)})),
        (SUPPORT, "missing_field", orjson.dumps({"customer_id": c, "status": "opened", "occurred_at": rfc3339(top)})),
        (CANCELLATIONS, "bad_value", orjson.dumps({"cancellation_id": "xb", "customer_id": c, "occurred_at": rfc3339(top), "mrr": -5})),
        (CANCELLATIONS, "wrong_type", orjson.dumps({"cancellation_id": "xc", "customer_id": c, "occurred_at": rfc3339(top), "mrr": "lots"})),
        (CUSTOMERS, "bad_value", orjson.dumps({"customer_id": c, "status": "zombie"})),
    ]  # fmt: skip
    for topic, reason, raw in bad:
        es.phase2.append((topic, key, raw))
        es.dead[reason] += 1
    return es
