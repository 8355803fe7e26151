"""An independent computation of every score from raw events (SPEC §3, §4).

Deliberately naive: keeps lists of events and recomputes each score from scratch with plain
arithmetic, sharing no code with ``streams.metrics`` or ``streams.state`` (except the
histogram bucket edges, needed to say which bucket a percentile must land in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from streams.metrics.histogram import bucket_index

WINDOW_MS = {"5m": 300_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000,
             "30d": 2_592_000_000}  # fmt: skip


@dataclass
class Truth:
    """Valid, first-occurrence events in processing order (per partition order is preserved
    because producers key by customer and we produce sequentially)."""

    surveys: list[dict[str, Any]] = field(default_factory=list)
    support: list[dict[str, Any]] = field(default_factory=list)
    cancellations: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)


def member_of(event: dict[str, Any], dimension: str) -> str | None:
    if dimension == "all":
        return "all"
    parts = dimension.split("+")
    dims = event["dims"]
    if any(p not in dims for p in parts):
        return None
    return "+".join(dims[p] for p in parts)


def in_window(
    events: list[dict[str, Any]], rec: dict[str, Any], start: int, end: int
) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if start <= e["t"] < end and member_of(e, rec["dimension"]) == rec["member"]
    ]


def _nps(scores: list[int]) -> dict[str, Any]:
    n = len(scores)
    p = sum(s >= 9 for s in scores) / n
    d = sum(s <= 6 for s in scores) / n
    value = 100 * (p - d)
    se = 100 * math.sqrt((p + d - (p - d) ** 2) / n)
    return {"value": value, "n": n, "ci95_low": max(-100.0, value - 1.96 * se),
            "ci95_high": min(100.0, value + 1.96 * se)}  # fmt: skip


def _rescaled(e: dict[str, Any], top: int) -> float:
    lo, hi = e["lo"], e["hi"]
    return 1 + (top - 1) * (e["score"] - lo) / (hi - lo)


def expected(truth: Truth, rec: dict[str, Any], min_sample: int) -> dict[str, Any]:
    """``{"value": ..., "n": ...}`` (plus ``ci95_*`` where checked) for one score record."""
    start, end = rec["_start_ms"], rec["_end_ms"]
    metric = rec["metric"]
    if metric in ("nps", "detractor_share", "csat", "csat_mean", "ces", "ces_easy_share"):
        survey = metric.split("_")[0] if metric != "detractor_share" else "nps"
        evs = [e for e in in_window(truth.surveys, rec, start, end) if e["survey"] == survey]
        n = len(evs)
        if n < min_sample:
            return {"value": None, "n": n}
        if metric == "nps":
            return _nps([e["score"] for e in evs])
        if metric == "detractor_share":
            return {"value": 100 * sum(e["score"] <= 6 for e in evs) / n, "n": n}
        if metric == "csat":
            return {"value": 100 * sum(e["score"] >= e["hi"] - 1 for e in evs) / n, "n": n}
        if metric == "csat_mean":
            return {"value": sum(_rescaled(e, 5) for e in evs) / n, "n": n}
        if metric == "ces":
            return {"value": sum(_rescaled(e, 7) for e in evs) / n, "n": n}
        return {"value": 100 * sum(_rescaled(e, 7) >= 5 for e in evs) / n, "n": n}
    if metric in ("cancellations", "lost_mrr", "churn_rate", "retention_rate"):
        evs = in_window(truth.cancellations, rec, start, end)
        c = len(evs)
        if metric == "cancellations":
            return {"value": float(c), "n": c}
        if metric == "lost_mrr":
            return {"value": sum(e["mrr"] for e in evs), "n": c}
        active = active_customers(truth, rec["dimension"], rec["member"])
        if active is None:
            return {"value": None, "n": c}
        base = active + c
        if base < min_sample or base == 0:
            return {"value": None, "n": base}
        rate = c / base
        return {"value": rate if metric == "churn_rate" else 1 - rate, "n": base}
    return _support(truth, rec, min_sample)


def active_customers(truth: Truth, dimension: str, member: str) -> int | None:
    """Customers whose latest record is active; None if no record ever made the member count."""
    latest: dict[str, dict[str, Any]] = {}
    touched = False
    for c in truth.customers:
        prev = latest.get(c["customer_id"])
        if c["status"] == "active" and member_of(c, dimension) == member:
            touched = True
        if prev is not None and prev["status"] == "active" and member_of(prev, dimension) == member:
            touched = True
        latest[c["customer_id"]] = c
    if not touched:
        return None
    return sum(
        1 for c in latest.values() if c["status"] == "active" and member_of(c, dimension) == member
    )


def _support_latencies(truth: Truth) -> list[dict[str, Any]]:
    """Each support event with its first-response / resolution seconds, in processing order."""
    opened: dict[str, int] = {}
    responded: set[str] = set()
    out = []
    for e in truth.support:
        iid = e["interaction_id"]
        o = e.get("opened_at", opened.get(iid))
        row = dict(e)
        if e["status"] == "opened" and iid not in opened:
            opened[iid] = e["t"]
        elif iid not in opened and e.get("opened_at") is not None:
            opened[iid] = e["opened_at"]
        if e["status"] == "responded" and iid not in responded:
            responded.add(iid)
            if o is not None:
                row["frt"] = max(0.0, (e["t"] - o) / 1000)
        if e["status"] == "resolved" and o is not None:
            row["res"] = max(0.0, (e["t"] - o) / 1000)
        out.append(row)
    return out


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    rank = max(1, math.ceil(round(q * len(values), 9)))
    return values[rank - 1]


def _support(truth: Truth, rec: dict[str, Any], min_sample: int) -> dict[str, Any]:
    evs = in_window(_support_latencies(truth), rec, rec["_start_ms"], rec["_end_ms"])
    count = {
        s: sum(e["status"] == s for e in evs)
        for s in ("opened", "responded", "resolved", "reopened")
    }
    metric = rec["metric"]
    if metric == "ticket_volume":
        return {"value": float(count["opened"]), "n": count["opened"]}
    if metric == "resolution_rate":
        num, den = count["resolved"], count["opened"]
    elif metric == "reopen_rate":
        num, den = count["reopened"], count["resolved"]
    else:
        kind = "frt" if metric.startswith("first_response") else "res"
        values = [e[kind] for e in evs if kind in e]
        if len(values) < min_sample:
            return {"value": None, "n": len(values)}
        q = 0.5 if "_p50_" in metric else 0.9
        return {"bucket": bucket_index(_quantile(values, q)), "n": len(values)}
    if den < min_sample or den == 0:
        return {"value": None, "n": den}
    return {"value": num / den, "n": den}
