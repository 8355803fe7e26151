"""Helpers shared by the fold tests (no broker, no Faust)."""

from __future__ import annotations

from typing import Any

from streams.metrics.stats import SupportCounts


def apply_writes(table: dict[str, Any], writes: dict[str, Any]) -> None:
    """A batch's writes into a dict table, as the agent does (``None`` deletes)."""
    for k, v in writes.items():
        if v is None:
            table.pop(k, None)
        else:
            table[k] = v


def fold_support(events: list[tuple[str, float | None]]) -> SupportCounts:
    """Support events ``(status, latency)`` folded one by one with the ``add_*`` methods."""
    c = SupportCounts.empty()
    for status, latency in events:
        if status == "opened":
            c.add_opened()
        elif status == "responded":
            c.add_responded(latency)
        elif status == "resolved":
            c.add_resolved(latency)
        else:
            c.add_reopened()
    return c
