"""Read the latest ``cx.scores`` record per key and print them as a table (``cxpulse scores``)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer

from streams import codecs
from streams.topics import SCORES


async def latest_scores(
    bootstrap: str, *, idle_s: float = 2.0, topic: str = SCORES
) -> dict[str, dict[str, Any]]:
    """Latest record per key, reading from the beginning until ``idle_s`` pass with nothing new.

    Reads until idle rather than to the end offsets: Tansu reports a partition's end offset as
    the base offset of its last record batch + 1, which can be short of the real end.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    latest: dict[str, dict[str, Any]] = {}
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=10_000)
            if not batch:
                return latest
            for messages in batch.values():
                for m in messages:
                    if m.key is not None and m.value is not None:
                        latest[m.key.decode()] = codecs.loads(m.value)
    finally:
        await consumer.stop()


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(
    records: dict[str, dict[str, Any]],
    *,
    window: str | None = None,
    dimension: str | None = None,
    metric: str | None = None,
) -> str:
    rows = [
        r
        for r in records.values()
        if (window is None or r["window"] == window)
        and (dimension is None or r["dimension"] == dimension)
        and (metric is None or r["metric"] == metric)
    ]
    if not rows:
        return "no scores yet (is a worker running and fed?)"
    rows.sort(key=lambda r: (r["metric"], r["window"], r["dimension"], r["member"]))
    header = ("metric", "window", "dimension", "member", "value", "ci95", "n", "as_of")
    lines = [header]
    for r in rows:
        ci = "" if r.get("ci95_low") is None else f"[{_fmt(r['ci95_low'])}, {_fmt(r['ci95_high'])}]"
        lines.append(
            (
                r["metric"],
                r["window"],
                r["dimension"],
                r["member"],
                _fmt(r["value"]),
                ci,
                str(r["n"]),
                r["as_of"],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    )
