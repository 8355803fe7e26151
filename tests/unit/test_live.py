"""The live page's cache (streams/live.py) and the ``scores --watch`` view (streams/scores_view.py)
without a broker, a worker or a terminal."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams import live, scores_view
from streams.topics import ALERTS, SCORES

NOW_MS = 1_790_000_000_000


def score(metric: str = "nps", window: str = "1h", dimension: str = "all", member: str = "all",
          value: float | None = 30.0, n: int = 100, as_of: str = "2026-11-22T10:00:00.000Z",
          **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "metric": metric, "window": window, "window_start": "2026-11-22T09:01:00.000Z",
        "window_end": "2026-11-22T10:01:00.000Z", "dimension": dimension, "member": member,
        "value": value, "n": n, "ci95_low": None if value is None else value - 5,
        "ci95_high": None if value is None else value + 5, "counts": {"n": n, "promoters": 1},
        "revision": 0, "as_of": as_of, "emitted_at": as_of, "definition": f"{metric}/v1",
        **extra,
    }  # fmt: skip


def key_of(rec: dict[str, Any]) -> str:
    return f"{rec['metric']}|{rec['window']}|{rec['dimension']}={rec['member']}"


def alert(alert_id: str, state: str, updated_at: str, **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": alert_id, "rule": "detractor_spike", "state": state, "severity": "critical",
        "metric": "nps", "window": "1h", "dimension": "segment", "member": "enterprise",
        "current": {"value": 5.0, "n": 80}, "baseline": {"value": 35.0, "n": 900, "window": "7d"},
        "delta": -30.0, "evidence": {"test": "binomial", "p": 0.001},
        "started_at": "2026-11-22T10:00:00Z", "updated_at": updated_at,
        "summary": "Detractors spiked for enterprise", **extra,
    }  # fmt: skip


def t(minute: int) -> str:
    return f"2026-11-22T10:{minute:02d}:00.000Z"


# --- latest per key, bounded history -------------------------------------------------------------


def test_latest_record_per_key_wins_and_counts_are_dropped() -> None:
    cache = live.LiveCache()
    a1, a2, b = score(value=10.0, as_of=t(1)), score(value=12.0, as_of=t(2)), score(metric="csat")
    for rec in (a1, b, a2):
        live.fold_score(cache, key_of(rec), rec)
    assert set(cache.scores) == {key_of(a1), key_of(b)}
    assert cache.scores[key_of(a1)]["value"] == 12.0
    assert "counts" not in cache.scores[key_of(a1)]


def test_history_is_bounded_and_keeps_the_newest_points() -> None:
    cache = live.LiveCache(history_points=5)
    k = key_of(score())
    for i in range(12):
        live.fold_score(cache, k, score(value=float(i), as_of=t(i)))
    assert [p[1] for p in cache.history[k]] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert cache.history[k][-1] == (t(11), 11.0, 6.0, 16.0)


def test_history_has_one_point_per_watermark() -> None:
    """A re-emission at the same as_of (new revision) replaces the point, never adds one."""
    cache = live.LiveCache()
    k = key_of(score())
    live.fold_score(cache, k, score(value=10.0, as_of=t(1)))
    live.fold_score(cache, k, score(value=11.0, as_of=t(1), revision=1))
    live.fold_score(cache, k, score(value=None, as_of=t(2)))
    assert list(cache.history[k]) == [(t(1), 11.0, 6.0, 16.0), (t(2), None, None, None)]


def test_rereading_the_topic_keeps_the_history_in_time_order() -> None:
    """After a reconnect the feed reads from the beginning again: old points are skipped, the
    latest record converges to the newest."""
    cache = live.LiveCache()
    k = key_of(score())
    records = [score(value=float(i), as_of=t(i)) for i in range(4)]
    for rec in records + records:
        live.fold_score(cache, k, rec)
    assert [p[0] for p in cache.history[k]] == [t(0), t(1), t(2), t(3)]
    assert cache.scores[k]["value"] == 3.0


def test_tombstone_forgets_the_key() -> None:
    cache = live.LiveCache()
    k = key_of(score())
    live.fold_score(cache, k, score())
    live.fold_score(cache, k, None)
    assert k not in cache.scores and k not in cache.history


def test_apply_message_routes_topics_and_counts_bad_records() -> None:
    cache = live.LiveCache()
    rec = score()
    live.apply_message(cache, SCORES, key_of(rec).encode(), orjson.dumps(rec), NOW_MS)
    live.apply_message(cache, SCORES, b"k", b"not json", NOW_MS)
    live.apply_message(cache, SCORES, None, orjson.dumps(rec), NOW_MS)
    live.apply_message(cache, SCORES, b"k", b"[1, 2]", NOW_MS)
    live.apply_message(cache, ALERTS, b"a", orjson.dumps(alert("a", "firing", t(1))), NOW_MS)
    live.apply_message(cache, ALERTS, b"a", orjson.dumps({"state": "firing"}), NOW_MS)
    assert list(cache.scores) == [key_of(rec)]
    assert list(cache.alerts) == ["a"]
    assert (cache.records, cache.rejected, cache.last_record_ms) == (6, 4, NOW_MS)


# --- alert state folding -------------------------------------------------------------------------


def test_latest_state_per_alert_id_decides_firing() -> None:
    cache = live.LiveCache()
    live.fold_alert(cache, alert("a", "firing", t(1)))
    live.fold_alert(cache, alert("b", "firing", t(2)))
    live.fold_alert(cache, alert("a", "resolved", t(3)))
    assert [a["alert_id"] for a in live.firing_alerts(cache.alerts.values())] == ["b"]
    assert cache.alerts["a"]["state"] == "resolved"
    assert "evidence" not in cache.alerts["b"]


def test_an_older_update_does_not_reopen_a_resolved_alert() -> None:
    cache = live.LiveCache()
    live.fold_alert(cache, alert("a", "resolved", t(5)))
    live.fold_alert(cache, alert("a", "firing", t(1)))  # redelivered, older
    assert live.firing_alerts(cache.alerts.values()) == []


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ([], []),
        ([("w", "warning", t(9)), ("c", "critical", t(1))], ["c", "w"]),
        ([("old", "critical", t(1)), ("new", "critical", t(2))], ["new", "old"]),
        ([("x", "bespoke", t(1)), ("i", "info", t(2))], ["x", "i"]),
    ],
)
def test_firing_alerts_order_most_severe_then_newest(
    alerts: list[tuple[str, str, str]], expected: list[str]
) -> None:
    records = [
        alert(i, "firing", t(0), severity=sev, started_at=started) for i, sev, started in alerts
    ]
    assert [a["alert_id"] for a in live.firing_alerts(records)] == expected


def test_alert_memory_is_bounded_resolved_first() -> None:
    cache = live.LiveCache(max_alerts=3)
    live.fold_alert(cache, alert("f", "firing", t(0)))
    for i in range(5):
        live.fold_alert(cache, alert(f"r{i}", "resolved", t(i)))
    assert list(cache.alerts) == ["f", "r3", "r4"]


# --- the /api/scores document --------------------------------------------------------------------


def test_snapshot_filters_and_carries_history_alerts_and_selectors() -> None:
    cache = live.LiveCache()
    recs = [
        score(as_of=t(1)), score(as_of=t(2)), score(window="5m", as_of=t(3)),
        score(dimension="segment", member="smb", value=None, n=4),
        score(dimension="channel", member="chat"), score(metric="csat", window="90m"),
    ]  # fmt: skip
    for rec in recs:
        live.fold_score(cache, key_of(rec), rec)
    live.fold_alert(cache, alert("a", "firing", t(1)))
    doc = live.snapshot(cache, now_ms=NOW_MS, windows=("5m", "1h"), min_sample=30, window="1h",
                        dimensions=["all", "segment"])  # fmt: skip
    got = {(r["metric"], r["dimension"], r["member"]): r for r in doc["scores"]}
    assert set(got) == {("nps", "all", "all"), ("nps", "segment", "smb")}
    assert [p[0] for p in got[("nps", "all", "all")]["history"]] == [t(1), t(2)]
    assert got[("nps", "segment", "smb")]["value"] is None
    assert doc["as_of"] == t(3)  # over every record, not only the filtered ones
    assert doc["windows"] == ["5m", "1h", "90m"]
    assert doc["dimensions"] == ["all", "channel", "segment"]
    assert (doc["min_sample"], doc["window"]) == (30, "1h")
    assert [a["alert_id"] for a in doc["alerts"]] == ["a"]
    assert orjson.loads(orjson.dumps(doc)) == doc  # plain JSON
    bare = live.snapshot(cache, now_ms=NOW_MS, metrics=["csat"], history=False)
    assert [r["metric"] for r in bare["scores"]] == ["csat"]
    assert "history" not in bare["scores"][0]


def test_snapshot_of_an_empty_cache() -> None:
    doc = live.snapshot(live.LiveCache(), now_ms=NOW_MS, windows=("1h",))
    assert doc["scores"] == [] and doc["alerts"] == [] and doc["as_of"] is None
    assert doc["feed"] == {"connected": False, "records": 0, "rejected": 0, "last_record_at": None}


def test_static_assets_exist_and_use_no_network() -> None:
    assets = live.load_assets()
    assert set(assets) == set(live.ASSETS)
    for text in assets.values():
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text and "//cdn" not in text


# --- scores --watch ------------------------------------------------------------------------------


@dataclass
class FakeMessage:
    key: bytes | None
    value: bytes | None


class FakeConsumer:
    """Hands out one prepared batch per getmany call, then nothing (after the timeout)."""

    def __init__(self, batches: list[list[FakeMessage]]) -> None:
        self.batches = batches
        self.started = self.stopped = 0

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def getmany(self, *partitions: Any, timeout_ms: int = 0,
                      max_records: int | None = None) -> Mapping[Any, list[Any]]:  # fmt: skip
        if self.batches:
            return {("cx.scores", 0): self.batches.pop(0)}
        await asyncio.sleep(timeout_ms / 1000)
        return {}


def msg(rec: dict[str, Any] | None, key: str | None = None) -> FakeMessage:
    k = key if key is not None else key_of(rec or {})
    return FakeMessage(k.encode(), None if rec is None else orjson.dumps(rec))


def test_apply_keeps_latest_and_handles_tombstones() -> None:
    records: scores_view.Records = {}
    a = score()
    assert scores_view.apply(records, key_of(a).encode(), orjson.dumps(a))
    assert scores_view.apply(records, key_of(a).encode(), orjson.dumps(score(value=1.0)))
    assert records[key_of(a)]["value"] == 1.0
    assert scores_view.apply(records, key_of(a).encode(), None)
    assert not scores_view.apply(records, key_of(a).encode(), None)
    assert not scores_view.apply(records, None, orjson.dumps(a))
    assert records == {}


async def test_feed_polls_incrementally_with_one_consumer() -> None:
    a, b = score(), score(metric="csat", value=80.0)
    consumer = FakeConsumer([[msg(a), msg(b)]])
    async with scores_view.ScoreFeed("unused", consumer=consumer) as feed:
        assert await feed.poll(0.01) == 2
        assert await feed.poll(0.01) == 0
        consumer.batches.append([msg(score(value=42.0)), msg(None, key_of(b))])
        assert await feed.poll(0.01) == 2
        assert list(feed.records) == [key_of(a)]
        assert feed.records[key_of(a)]["value"] == 42.0
    assert (consumer.started, consumer.stopped) == (1, 1)


def test_render_watch_clears_the_screen_and_shows_the_table() -> None:
    records = {key_of(r): r for r in (score(value=31.25), score(dimension="segment",
                                                                 member="smb", value=None, n=3))}  # fmt: skip
    frame = scores_view.render_watch(records, now=datetime(2026, 11, 22, 10, 0, 5, tzinfo=UTC),
                                     interval=2.0, source="127.0.0.1:9092", window="1h")  # fmt: skip
    assert frame.startswith(scores_view.CLEAR)
    lines = frame[len(scores_view.CLEAR) :].splitlines()
    assert lines[0] == (
        "cxpulse scores --watch  127.0.0.1:9092  2 keys  window=1h  10:00:05 UTC"
        "  (every 2 s, Ctrl-C quits)"
    )
    assert lines[2].split() == ["metric", "window", "dimension", "member", "value", "ci95", "n",
                                "as_of"]  # fmt: skip
    assert lines[3].split()[:5] == ["nps", "1h", "all", "all", "31.2"]
    assert lines[4].split()[:6] == ["nps", "1h", "segment", "smb", "—", "3"]
    empty = scores_view.render_watch({}, now=datetime.now(UTC), interval=1, source="x")
    assert "no scores yet" in empty


async def test_watch_redraws_with_new_records_and_closes_the_consumer() -> None:
    consumer = FakeConsumer([[msg(score(value=10.0))]])
    frames: list[str] = []

    def write(text: str) -> None:
        frames.append(text)
        if len(frames) == 1:  # between two frames, a new value arrives
            consumer.batches.append([msg(score(value=20.0))])

    n = await scores_view.watch("b:9092", interval=0.05, write=write, flush=lambda: None,
                                consumer=consumer, max_frames=3)  # fmt: skip
    assert n == 3 and len(frames) == 3
    assert all(f.startswith(scores_view.CLEAR) for f in frames)
    assert " 10.0 " in frames[0] and " 20.0 " in frames[1]
    assert (consumer.started, consumer.stopped) == (1, 1)


async def test_watch_stops_on_the_event_and_closes_the_consumer() -> None:
    consumer = FakeConsumer([])
    stop = asyncio.Event()
    frames: list[str] = []

    def write(text: str) -> None:
        frames.append(text)
        stop.set()  # what the SIGINT handler does

    assert await scores_view.watch("b:9092", interval=10.0, write=write, flush=lambda: None,
                                   consumer=consumer, stop=stop) == 1  # fmt: skip
    assert (consumer.started, consumer.stopped) == (1, 1)


async def test_watch_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        await scores_view.watch("b:9092", interval=0, consumer=FakeConsumer([]))
