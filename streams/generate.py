"""Synthetic but realistic CX traffic for the four input topics (``cxpulse generate``, demo, bench).

``generate()`` is deterministic given its arguments (one ``random.Random(seed)``; no set
iteration, no wall clock) and yields ``(topic, key, value)`` in event-time order:

- first the customer base: one ``cx.customers`` record (``status: active``) per customer;
- then ``n`` messages of activity, about 70% survey responses (NPS/CSAT/CES with per-segment
  score distributions), support ticket lifecycles (opened -> responded -> resolved, sometimes
  reopened; later states are emitted later in event time and carry ``opened_at``),
  cancellations (each followed by the customer's ``cancelled`` record) and sign-ups.

Times are RFC 3339 strings (mostly ``Z``, some with a regional offset), except in-app survey
answers and phone tickets, whose source systems write integer epoch milliseconds.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import hashlib
import heapq
import itertools
import logging
import math
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams import codecs, topics
from streams.settings import Settings

log = logging.getLogger(__name__)

Message = tuple[str, bytes, bytes]
TimedMessage = tuple[int, str, bytes, bytes]  # (event time ms, topic, key, value)

SEGMENTS = ("enterprise", "mid-market", "smb", "consumer")
CHANNELS = ("chat", "email", "phone", "web", "in-app")
TOUCHPOINTS = ("onboarding", "support", "billing", "product", "renewal")
REGIONS = ("na", "emea", "apac", "latam")
PLANS = ("free", "pro", "business", "enterprise")
PRIORITIES = ("low", "normal", "high", "urgent")
REASONS = ("price", "missing_feature", "competitor", "poor_support", "no_longer_needed",
           "budget_cuts", "other")  # fmt: skip


class _Choice:
    """Weighted choice with precomputed cumulative weights (random.choices rebuilds them)."""

    def __init__(self, values: Sequence[str], weights: Sequence[float]) -> None:
        self.values = tuple(values)
        self.cum = list(itertools.accumulate(weights))

    def __call__(self, rng: random.Random) -> str:
        return self.values[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


@dataclass(frozen=True)
class _Segment:
    customers: float  # share of the customer base
    activity: float  # share of surveys/tickets (enterprise accounts have many seats)
    churn: float  # share of cancellations
    promoters: float  # NPS shares; NPS ~ 100 * (promoters - detractors)
    detractors: float
    csat: tuple[float, ...]  # weights of 1..5
    ces: tuple[float, ...]  # weights of 1..7
    plan: _Choice
    channel: _Choice


_PROFILES = {  # enterprise NPS ~ +35, mid-market ~ +25, smb ~ +10, consumer ~ 0
    "enterprise": _Segment(0.08, 0.22, 0.06, 0.52, 0.17, (2, 3, 8, 40, 47), (1, 2, 4, 9, 20, 34, 30),
                           _Choice(("enterprise", "business"), (0.7, 0.3)),
                           _Choice(CHANNELS, (0.15, 0.35, 0.3, 0.1, 0.1))),
    "mid-market": _Segment(0.17, 0.24, 0.16, 0.45, 0.20, (3, 4, 10, 41, 42), (2, 3, 6, 11, 22, 31, 25),
                           _Choice(("business", "pro"), (0.6, 0.4)),
                           _Choice(CHANNELS, (0.25, 0.3, 0.2, 0.15, 0.1))),
    "smb": _Segment(0.35, 0.27, 0.36, 0.38, 0.28, (5, 7, 14, 39, 35), (3, 5, 8, 13, 23, 27, 21),
                    _Choice(("pro", "free", "business"), (0.55, 0.35, 0.1)),
                    _Choice(CHANNELS, (0.35, 0.25, 0.1, 0.15, 0.15))),
    "consumer": _Segment(0.40, 0.27, 0.42, 0.35, 0.35, (7, 8, 15, 37, 33), (4, 6, 9, 14, 22, 25, 20),
                         _Choice(("free", "pro"), (0.7, 0.3)),
                         _Choice(CHANNELS, (0.3, 0.15, 0.05, 0.2, 0.3))),
}  # fmt: skip

_REGION = _Choice(REGIONS, (0.45, 0.30, 0.17, 0.08))
_REGION_OFFSET_H = {"na": -5, "emea": 1, "apac": 8, "latam": -3}
_TOUCHPOINT = _Choice(TOUCHPOINTS, (0.12, 0.35, 0.13, 0.28, 0.12))
_SURVEY = _Choice(("nps", "csat", "ces"), (0.5, 0.35, 0.15))
_PRIORITY = _Choice(PRIORITIES, (0.3, 0.45, 0.2, 0.05))
_PRIORITY_SPEED = {"low": 1.5, "normal": 1.0, "high": 0.6, "urgent": 0.3}
_REASON = _Choice(REASONS, (0.25, 0.2, 0.15, 0.1, 0.15, 0.1, 0.05))
_CANCEL_CHANNEL = _Choice(("web", "email", "phone", "in-app"), (0.5, 0.2, 0.2, 0.1))
# Median seconds to first response and from response to resolution, per channel.
_FIRST_RESPONSE_S = {"chat": 60, "phone": 15, "in-app": 180, "web": 900, "email": 1800}
_RESOLUTION_S = {"chat": 300, "phone": 240, "in-app": 900, "web": 3600, "email": 7200}
_DETRACTOR_SCORES = _Choice("0123456", (1, 1, 1, 2, 3, 5, 7))
_MRR_RANGE = {"free": (0.0, 0.0), "pro": (29.0, 290.0), "business": (300.0, 3000.0),
              "enterprise": (3000.0, 60000.0)}  # fmt: skip
_COMMENTS = {
    "negative": ("Took far too long to get an answer.", "The {tp} process is confusing.",
                 "Considering other vendors after this.", "Third time I had to explain the issue.",
                 "Pricing went up again without notice.", "Nobody followed up on my ticket."),
    "neutral": ("It works, mostly.", "OK, but the {tp} step could be simpler.",
                "Average experience.", "Fine once I found the right page."),
    "positive": ("Great support, solved in minutes!", "Love the product.",
                 "The {tp} experience was smooth.", "Very helpful team, thank you."),
}  # fmt: skip

# Arrival kinds: a ticket makes ~3 messages and a cancellation 2, so surveys are ~70% of traffic.
_KIND_WEIGHTS = {"survey": 0.745, "ticket": 0.13, "cancellation": 0.002, "signup": 0.002}
_KIND = _Choice(tuple(_KIND_WEIGHTS), tuple(_KIND_WEIGHTS.values()))
_MESSAGES_PER_KIND = {"survey": 1.0, "ticket": 3.0, "cancellation": 2.0, "signup": 1.0}
_MESSAGES_PER_ARRIVAL = sum(w * _MESSAGES_PER_KIND[k] for k, w in _KIND_WEIGHTS.items()) / sum(
    _KIND_WEIGHTS.values()
)


@dataclass(frozen=True)
class Spike:
    """A detractor spike: NPS answers of ``segment`` (and ``channel``) in [start_ms, end_ms)."""

    segment: str
    start_ms: int
    end_ms: int
    channel: str | None = None
    detractor_share: float = 0.75
    # detractor-spike | nps-drop (promoters turn passive) | churn-spike (extra cancellations)
    # | slow-support (first responses 10x slower)
    kind: str = "detractor-spike"

    def covers(self, t_ms: int, segment: str, channel: str) -> bool:
        return (
            self.start_ms <= t_ms < self.end_ms
            and segment == self.segment
            and (self.channel is None or channel == self.channel)
        )


@dataclass(frozen=True)
class Scenario:
    """A named traffic recipe; the spike offset is from the wall clock when live, else from
    the first event."""

    name: str
    seed: int = 7
    customers: int = 5000
    segments: tuple[str, ...] = SEGMENTS
    history_s: int = 600  # live mode: event times start this far before now
    spike_segment: str | None = None
    spike_channel: str | None = None
    spike_after_s: float = 20.0
    spike_duration_s: float = 300.0
    spike_detractor_share: float = 0.75
    anomaly: str = "detractor-spike"

    def spike(self, origin_ms: int) -> Spike | None:
        if self.spike_segment is None:
            return None
        start = origin_ms + int(self.spike_after_s * 1000)
        return Spike(
            self.spike_segment,
            start,
            start + int(self.spike_duration_s * 1000),
            self.spike_channel,
            self.spike_detractor_share,
            self.anomaly,
        )


SCENARIOS = {
    "steady": Scenario("steady"),
    "spike": Scenario("spike", spike_segment="enterprise"),
    # Rehearsal scenarios for each alert rule: the anomaly starts `spike_after_s` in and lasts
    # `spike_duration_s` (event time) in segment "enterprise" (or smb for churn).
    "detractor-spike": Scenario(
        "detractor-spike", spike_segment="enterprise", spike_after_s=3600, spike_duration_s=3600
    ),
    "nps-drop": Scenario(
        "nps-drop",
        spike_segment="enterprise",
        spike_after_s=3600,
        spike_duration_s=3600,
        anomaly="nps-drop",
    ),
    "churn-spike": Scenario(
        "churn-spike",
        spike_segment="smb",
        spike_after_s=3600,
        spike_duration_s=3600,
        anomaly="churn-spike",
    ),
    "slow-support": Scenario(
        "slow-support",
        spike_segment="enterprise",
        spike_after_s=3600,
        spike_duration_s=3600,
        anomaly="slow-support",
    ),
    "demo": Scenario(
        "demo", spike_segment="enterprise", spike_after_s=20, spike_duration_s=600, history_s=240
    ),
}


@dataclass
class _Customer:
    id: str
    segment: str
    region: str
    plan: str
    mrr: float
    started_ms: int


class _Pool:
    """Active customers of one segment: O(1) random pick and removal."""

    def __init__(self) -> None:
        self.items: list[_Customer] = []
        self.index: dict[str, int] = {}

    def add(self, c: _Customer) -> None:
        self.index[c.id] = len(self.items)
        self.items.append(c)

    def pick(self, rng: random.Random) -> _Customer:
        return self.items[rng.randrange(len(self.items))]

    def remove(self, c: _Customer) -> None:
        i = self.index.pop(c.id)
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last.id] = i


def rfc3339(ms: int, offset_h: int = 0) -> str:
    """``2026-11-22T10:00:00.123Z``, or with a ``+hh:00`` offset when ``offset_h`` is set."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if offset_h == 0:
        return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"
    return dt.astimezone(timezone(timedelta(hours=offset_h))).isoformat(timespec="milliseconds")


class _Generator:
    def __init__(
        self, seed: int, start_ms: int, rate_per_s: float, spike: Spike | None,
        segments: Sequence[str], customers: int, comment_share: float,
    ) -> None:  # fmt: skip
        unknown = [s for s in segments if s not in _PROFILES]
        if unknown or not segments:
            raise ValueError(f"unknown segments {unknown}; known: {SEGMENTS}")
        if rate_per_s <= 0 or customers < 1:
            raise ValueError("rate_per_s and customers must be positive")
        self.rng = random.Random(seed)
        self.t = start_ms
        self.mean_gap_ms = 1000.0 * _MESSAGES_PER_ARRIVAL / rate_per_s
        self.spike = spike
        self.segments = tuple(segments)
        self.new_customers = customers
        self.comment_share = comment_share
        # Ids unique per (seed, start): two runs of the same recipe are not duplicates.
        self.tag = hashlib.blake2s(f"{seed}:{start_ms}".encode(), digest_size=4).hexdigest()
        self.pools = {s: _Pool() for s in self.segments}
        self.n_customers = 0
        self.counter = itertools.count()
        self.pending: list[tuple[int, int, str, str, dict[str, Any]]] = []
        p = [_PROFILES[s] for s in self.segments]
        self.pick_segment = _Choice(self.segments, [x.customers for x in p])
        self.active_segment = _Choice(self.segments, [x.activity for x in p])
        self.churn_segment = _Choice(self.segments, [x.churn for x in p])

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{self.tag}-{next(self.counter):07d}"

    def _msg(self, t: int, topic: str, key: str, value: dict[str, Any]) -> TimedMessage:
        return t, topic, key.encode(), codecs.compact(orjson.dumps(value))  # kept in lists

    def _time(self, ms: int, region: str, epoch: bool) -> str | int:
        if epoch:
            return ms
        return rfc3339(ms, _REGION_OFFSET_H[region] if self.rng.random() < 0.2 else 0)

    def stream(self) -> Iterator[TimedMessage]:
        for _ in range(self.new_customers):
            yield self._signup(self.t, long_ago=True)
        rng = self.rng
        while True:
            self.t += max(1, round(rng.expovariate(1.0) * self.mean_gap_ms))
            while self.pending and self.pending[0][0] <= self.t:
                t, _, topic, key, value = heapq.heappop(self.pending)
                yield self._msg(t, topic, key, value)
            kind = _KIND(rng)
            spike = self.spike
            if (
                spike is not None
                and spike.kind == "churn-spike"
                and spike.start_ms <= self.t < spike.end_ms
                and rng.random() < 0.2
            ):
                yield from self._cancellation(spike.segment)
            if kind == "survey":
                yield self._survey()
            elif kind == "ticket":
                yield self._ticket()
            elif kind == "cancellation":
                yield from self._cancellation()
            else:
                yield self._signup(self.t, long_ago=False)

    def _customer_record(self, c: _Customer, status: str) -> dict[str, Any]:
        return {"customer_id": c.id, "status": status, "started_at": rfc3339(c.started_ms),
                "segment": c.segment, "region": c.region, "plan": c.plan, "mrr": c.mrr}  # fmt: skip

    def _signup(self, t: int, *, long_ago: bool) -> TimedMessage:
        rng = self.rng
        segment = self.pick_segment(rng)
        plan = _PROFILES[segment].plan(rng)
        lo, hi = _MRR_RANGE[plan]
        mrr = round(math.exp(rng.uniform(math.log(lo), math.log(hi))), 2) if hi else 0.0
        started = t - rng.randrange(86_400_000, 3 * 365 * 86_400_000) if long_ago else t
        self.n_customers += 1
        c = _Customer(f"cus-{self.n_customers:06d}", segment, _REGION(rng), plan, mrr, started)
        self.pools[segment].add(c)
        return self._msg(t, topics.CUSTOMERS, c.id, self._customer_record(c, "active"))

    def _active(self, choice: _Choice) -> _Customer:
        segment = choice(self.rng)
        if not self.pools[segment].items:  # churned out: take anyone still active
            segment = next(s for s in self.segments if self.pools[s].items)
        return self.pools[segment].pick(self.rng)

    def _survey(self) -> TimedMessage:
        rng, t = self.rng, self.t
        c = self._active(self.active_segment)
        prof = _PROFILES[c.segment]
        channel = prof.channel(rng)
        touchpoint = _TOUCHPOINT(rng)
        survey = _SURVEY(rng)
        value: dict[str, Any] = {"response_id": self._id("resp"), "customer_id": c.id,
                                 "survey": survey}  # fmt: skip
        if survey == "nps":
            value["score"], mood = self._nps(prof, t, c.segment, channel, touchpoint)
        elif survey == "csat":
            score = _weighted_score(rng, prof.csat, bad=touchpoint == "billing")
            mood = "negative" if score <= 2 else "positive" if score >= 4 else "neutral"
            if rng.random() < 0.05:  # a 1-10 CSAT survey from an older tool
                value.update(scale_min=1, scale_max=10)
                score = 2 * score - rng.randrange(2)
            value["score"] = score
        else:
            score = _weighted_score(rng, prof.ces, bad=touchpoint == "billing")
            mood = "negative" if score <= 3 else "positive" if score >= 5 else "neutral"
            value["score"] = score
        value["occurred_at"] = self._time(t, c.region, epoch=channel == "in-app")
        value.update(channel=channel, touchpoint=touchpoint, segment=c.segment,
                     region=c.region, plan=c.plan)  # fmt: skip
        if rng.random() < 0.03:  # not every source knows the touchpoint
            del value["touchpoint"]
        # Unhappy customers write more: ~30% of negatives, ~10% of the rest (~15% overall).
        if rng.random() < self.comment_share * (2.0 if mood == "negative" else 0.67):
            value["comment"] = rng.choice(_COMMENTS[mood]).format(tp=touchpoint)
        return self._msg(t, topics.SURVEY_RESPONSES, c.id, value)

    def _nps(self, prof: _Segment, t: int, segment: str, channel: str,
             touchpoint: str) -> tuple[int, str]:  # fmt: skip
        rng = self.rng
        promoters, detractors = prof.promoters, prof.detractors
        if touchpoint == "billing":
            promoters, detractors = promoters - 0.06, detractors + 0.06
        spike = self.spike
        if spike is not None and spike.covers(t, segment, channel):
            if spike.kind == "detractor-spike":
                detractors = spike.detractor_share
                promoters = (1 - detractors) / 2
            elif spike.kind == "nps-drop":  # promoters turn passive, a few turn detractor
                promoters, detractors = promoters * 0.4, detractors + promoters * 0.15
        r = rng.random()
        if r < detractors:
            return int(_DETRACTOR_SCORES(rng)), "negative"
        if r < detractors + promoters:
            return (10 if rng.random() < 0.55 else 9), "positive"
        return (8 if rng.random() < 0.55 else 7), "neutral"

    def _ticket(self) -> TimedMessage:
        rng, t = self.rng, self.t
        c = self._active(self.active_segment)
        channel = _PROFILES[c.segment].channel(rng)
        priority = _PRIORITY(rng)
        iid = self._id("tkt")
        epoch = channel == "phone"  # the telephony system writes epoch ms
        opened_at = self._time(t, c.region, epoch)
        base = {"interaction_id": iid, "customer_id": c.id}
        dims = {"channel": channel, "segment": c.segment, "region": c.region, "priority": priority}

        def later(at: int, status: str, seq: int) -> None:
            value = {**base, "event_id": f"{iid}:{seq}", "status": status,
                     "occurred_at": self._time(at, c.region, epoch), "opened_at": opened_at, **dims}  # fmt: skip
            heapq.heappush(self.pending, (at, next(self.counter), topics.SUPPORT_INTERACTIONS,
                                          c.id, value))  # fmt: skip

        speed = _PRIORITY_SPEED[priority]
        spike = self.spike
        if (
            spike is not None
            and spike.kind == "slow-support"
            and spike.covers(t, c.segment, channel)
        ):
            speed *= 10.0
        at = t
        if rng.random() < 0.97:  # a few tickets are abandoned before anyone answers
            at += _lognormal_ms(rng, _FIRST_RESPONSE_S[channel] * speed, 0.8)
            later(at, "responded", 1)
            if rng.random() < 0.9:
                at += _lognormal_ms(rng, _RESOLUTION_S[channel] * speed, 1.0)
                later(at, "resolved", 2)
                if rng.random() < 0.08:
                    at += _lognormal_ms(rng, 1200.0, 1.0)  # "still broken" within the hour
                    later(at, "reopened", 3)
                    at += _lognormal_ms(rng, _RESOLUTION_S[channel] * speed / 2, 1.0)
                    later(at, "resolved", 4)
        value = {**base, "event_id": f"{iid}:0", "status": "opened", "occurred_at": opened_at,
                 **dims}  # fmt: skip
        return self._msg(t, topics.SUPPORT_INTERACTIONS, c.id, value)

    def _cancellation(self, segment: str | None = None) -> Iterator[TimedMessage]:
        rng, t = self.rng, self.t
        if segment is not None and self.pools[segment].items:
            c = self.pools[segment].pick(rng)
        else:
            c = self._active(self.churn_segment)
        if sum(len(p.items) for p in self.pools.values()) <= 1:
            yield self._signup(t, long_ago=False)  # never churn the last customer
            return
        self.pools[c.segment].remove(c)
        yield self._msg(t, topics.CANCELLATIONS, c.id, {
            "cancellation_id": self._id("cxl"), "customer_id": c.id,
            "occurred_at": self._time(t, c.region, epoch=False), "mrr": c.mrr,
            "reason": _REASON(rng), "segment": c.segment, "region": c.region, "plan": c.plan,
            "channel": _CANCEL_CHANNEL(rng),
        })  # fmt: skip
        yield self._msg(t, topics.CUSTOMERS, c.id, self._customer_record(c, "cancelled"))


@functools.cache
def _score_choice(weights: tuple[float, ...], bad: bool) -> _Choice:
    if bad:  # billing touchpoints skew low: double the weight of the lower half
        half = len(weights) // 2
        weights = tuple(w * 2 if i < half else w for i, w in enumerate(weights))
    return _Choice([str(i + 1) for i in range(len(weights))], weights)


def _weighted_score(rng: random.Random, weights: tuple[float, ...], *, bad: bool) -> int:
    return int(_score_choice(weights, bad)(rng))


def _lognormal_ms(rng: random.Random, median_s: float, sigma: float) -> int:
    return max(1000, int(rng.lognormvariate(math.log(median_s), sigma) * 1000))


def generate_timed(
    seed: int,
    n: int | None,
    start_ms: int,
    *,
    rate_per_s: float = 50.0,
    spike: Spike | None = None,
    segments: Sequence[str] = SEGMENTS,
    customers: int = 1000,
    comment_share: float = 0.15,
) -> Iterator[TimedMessage]:
    """Like :func:`generate`, with each message's event time first; ``n=None`` never ends."""
    gen = _Generator(seed, start_ms, rate_per_s, spike, segments, customers, comment_share)
    stream = gen.stream()
    return stream if n is None else itertools.islice(stream, customers + n)


def generate(
    seed: int,
    n: int,
    start_ms: int,
    *,
    rate_per_s: float = 50.0,
    spike: Spike | None = None,
    segments: Sequence[str] = SEGMENTS,
    customers: int = 1000,
    comment_share: float = 0.15,
) -> Iterator[Message]:
    """``customers`` base records at ``start_ms``, then ``n`` activity messages at about
    ``rate_per_s`` messages per second of event time; ``(topic, key, value)`` each."""
    for _t, topic, key, value in generate_timed(
        seed, n, start_ms, rate_per_s=rate_per_s, spike=spike, segments=segments,
        customers=customers, comment_share=comment_share,
    ):  # fmt: skip
        yield topic, key, value


_CHUNK = 2000  # await delivery every this many sends: bounded memory, errors surface early


async def _send(bootstrap: str, items: Iterable[tuple[float, str, bytes, bytes]],
                linger_ms: int) -> int:  # fmt: skip
    """Send ``(delay_s, topic, key, value)``; each goes out no earlier than ``delay_s`` after
    the producer started."""
    loop = asyncio.get_running_loop()
    # Tansu fails InitProducerId, so no idempotent producer; acks=all still waits for the write.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks="all",
                                enable_idempotence=False)  # fmt: skip
    pending: list[asyncio.Future[Any]] = []
    count = 0
    try:
        await producer.start()
        t0 = loop.time()
        for delay_s, topic, key, value in items:
            wait = t0 + delay_s - loop.time()
            if wait > 0.002:
                if pending and wait > 0.05:  # idle anyway: confirm what was sent
                    await asyncio.gather(*pending)
                    pending.clear()
                await asyncio.sleep(wait)
            pending.append(await producer.send(topic, value, key=key))
            count += 1
            if len(pending) >= _CHUNK:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return count
    finally:
        await producer.stop()


async def produce(
    bootstrap: str,
    messages: Iterable[Message],
    *,
    rate_per_s: float | None = None,
    linger_ms: int = 5,
) -> int:
    """Produce ``(topic, key, value)`` messages; ``rate_per_s=None`` is as fast as possible.

    Returns the number of messages acknowledged by the broker.
    """
    step = 0.0 if rate_per_s is None else 1.0 / rate_per_s
    items = ((i * step, topic, key, value) for i, (topic, key, value) in enumerate(messages))
    return await _send(bootstrap, items, linger_ms)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def run_generator(
    settings: Settings, scenario: Scenario, n: int, rate_per_s: float, realtime: bool
) -> int:
    """``cxpulse generate`` / demo traffic; returns the number of messages produced.

    Live (``realtime``): event times start ``scenario.history_s`` before now (sent at once, so
    windows have history) and then follow the wall clock at ``rate_per_s``; ``n <= 0`` runs
    until cancelled; the spike starts ``spike_after_s`` after launch. Otherwise ``n`` messages
    spread over the recent past end about now (none in the future) and are sent at full speed.
    """
    from streams.topics import create_topics, topic_specs

    # Tansu would auto-create a missing topic without configs and with its own partition count.
    await create_topics(settings.bootstrap, topic_specs(settings))
    now = _now_ms()
    if realtime:
        start, spike = now - scenario.history_s * 1000, scenario.spike(now)
    else:
        if n <= 0:
            raise ValueError("n must be positive unless realtime")
        start = now - int(n / rate_per_s * 1000) - 60_000
        spike = scenario.spike(start)
    timed = generate_timed(
        scenario.seed, n if n > 0 else None, start, rate_per_s=rate_per_s, spike=spike,
        segments=scenario.segments, customers=scenario.customers,
    )  # fmt: skip
    if realtime:
        items: Iterator[tuple[float, str, bytes, bytes]] = (
            (max(0.0, (t - now) / 1000), topic, key, value) for t, topic, key, value in timed
        )
    else:
        items = ((0.0, topic, key, value) for _t, topic, key, value in timed)
    log.info("generating %s (seed %s, spike %s)", scenario.name, scenario.seed, spike)
    return await _send(settings.bootstrap, items, linger_ms=5)
