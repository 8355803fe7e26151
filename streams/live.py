"""The live page (``/``, ``/live``) and its JSON feed (``/api/scores``), served by every worker.

Each worker only *owns* part of the score keys (stage 2 is partitioned), so the page is not fed
from the merge state: a background consumer without a group reads the whole ``cx.scores`` and
``cx.alerts`` topics from the beginning into a small in-process :class:`LiveCache` (latest
record per score key, a bounded history per key for sparklines, latest state per alert). Any
worker therefore serves the full picture, and a page survives a rebalance unchanged.

The folding functions are pure (tested in ``tests/unit/test_live.py``); :func:`register` is the
only Faust-facing part. The page itself is static (``streams/static/``): HTML + vanilla JS +
CSS, no build step and no CDN, polling ``/api/scores`` every 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams import codecs
from streams.topics import ALERTS, SCORES
from streams.windows import iso

if TYPE_CHECKING:
    import faust

    from streams.context import Context

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
ASSETS = ("index.html", "live.js", "live.css")
HISTORY_POINTS = 60  # sparkline length per score key
MAX_ALERTS = 500  # alert episodes remembered; resolved ones are forgotten first
RETRY_S = 2.0

# The fields of a score record the page needs (``counts`` can be large: histograms).
SCORE_FIELDS = ("metric", "window", "dimension", "member", "value", "n", "ci95_low", "ci95_high",
                "window_start", "window_end", "revision", "as_of", "emitted_at", "definition")  # fmt: skip
ALERT_FIELDS = ("alert_id", "rule", "state", "severity", "metric", "window", "dimension", "member",
                "current", "baseline", "delta", "summary", "started_at", "updated_at")  # fmt: skip
SEVERITY_RANK = {"critical": 0, "page": 0, "error": 1, "high": 1, "warning": 2, "info": 3}

# (as_of, value, ci95_low, ci95_high): one point per watermark, in watermark order; a
# re-emission at the same watermark (a late event, a new revision) replaces the point.
Point = tuple[str, float | None, float | None, float | None]


@dataclass
class LiveCache:
    history_points: int = HISTORY_POINTS
    max_alerts: int = MAX_ALERTS
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: dict[str, deque[Point]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: int = 0
    rejected: int = 0
    last_record_ms: int | None = None
    connected: bool = False


# --- pure folding ------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def fold_score(cache: LiveCache, key: str, record: dict[str, Any] | None) -> None:
    """Latest record per key (a tombstone forgets the key), plus one history point per as_of."""
    if record is None:
        cache.scores.pop(key, None)
        cache.history.pop(key, None)
        return
    cache.scores[key] = {f: record.get(f) for f in SCORE_FIELDS}
    point: Point = (
        str(record.get("as_of") or ""),
        _number(record.get("value")),
        _number(record.get("ci95_low")),
        _number(record.get("ci95_high")),
    )
    hist = cache.history.get(key)
    if hist is None:
        hist = cache.history[key] = deque(maxlen=cache.history_points)
    if not hist or hist[-1][0] < point[0]:
        hist.append(point)
    elif hist[-1][0] == point[0]:
        hist[-1] = point
    # else: an older watermark (the feed re-reading the topic after a reconnect): the history
    # already holds it, and a sparkline must stay in time order.


def fold_alert(cache: LiveCache, record: dict[str, Any]) -> None:
    """Latest state per ``alert_id``; an update older (``updated_at``) than the one held is
    ignored, so a redelivered ``firing`` cannot reopen a resolved episode."""
    alert_id = record.get("alert_id")
    if not isinstance(alert_id, str) or not alert_id:
        cache.rejected += 1
        return
    held = cache.alerts.get(alert_id)
    new_at, old_at = record.get("updated_at"), (held or {}).get("updated_at")
    if held is not None and isinstance(new_at, str) and isinstance(old_at, str) and new_at < old_at:
        return
    cache.alerts.pop(alert_id, None)  # re-insert: dict order = order of last update
    cache.alerts[alert_id] = {f: record.get(f) for f in ALERT_FIELDS}
    _prune_alerts(cache)


def _prune_alerts(cache: LiveCache) -> None:
    excess = len(cache.alerts) - cache.max_alerts
    if excess <= 0:
        return
    # Oldest resolved episodes first; firing ones only if there are more of them than the bound.
    order = sorted(cache.alerts, key=lambda a: cache.alerts[a].get("state") == "firing")
    for alert_id in order[:excess]:
        del cache.alerts[alert_id]


def firing_alerts(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts whose latest state is ``firing``: most severe first, then the newest episode."""
    firing = [a for a in alerts if a.get("state") == "firing"]
    firing.sort(key=lambda a: str(a.get("started_at") or ""), reverse=True)
    firing.sort(key=lambda a: SEVERITY_RANK.get(str(a.get("severity")), 2))
    return firing


def apply_message(cache: LiveCache, topic: str, key: bytes | None, value: bytes | None,
                  now_ms: int) -> None:  # fmt: skip
    """Fold one raw message of ``cx.scores`` or ``cx.alerts``; malformed ones are counted."""
    cache.records += 1
    cache.last_record_ms = now_ms
    try:
        record = None if value is None else codecs.loads(value)
    except codecs.JSONDecodeError:
        cache.rejected += 1
        return
    if record is not None and not isinstance(record, dict):
        cache.rejected += 1
    elif topic == SCORES:
        if key is None:
            cache.rejected += 1
        else:
            fold_score(cache, key.decode(errors="replace"), record)
    elif topic == ALERTS and record is not None:
        fold_alert(cache, record)


def _match(value: Any, wanted: Collection[str] | None) -> bool:
    return wanted is None or value in wanted


def snapshot(
    cache: LiveCache,
    *,
    now_ms: int,
    windows: Iterable[str] = (),
    min_sample: int | None = None,
    window: str | None = None,
    dimensions: Collection[str] | None = None,
    metrics: Collection[str] | None = None,
    history: bool = True,
) -> dict[str, Any]:
    """The ``/api/scores`` document: score records (optionally filtered) with their history,
    the firing alerts, and what the page needs to draw its selectors."""
    scores = []
    seen_windows, seen_dims = set(), set()
    as_of = None
    for key, rec in cache.scores.items():
        seen_windows.add(rec["window"])
        seen_dims.add(rec["dimension"])
        if isinstance(rec["as_of"], str) and (as_of is None or rec["as_of"] > as_of):
            as_of = rec["as_of"]
        if not (
            _match(rec["window"], None if window is None else (window,))
            and _match(rec["dimension"], dimensions)
            and _match(rec["metric"], metrics)
        ):
            continue
        item = {"key": key, **rec}
        if history:
            item["history"] = [list(p) for p in cache.history.get(key, ())]
        scores.append(item)
    scores.sort(key=lambda r: (str(r["metric"]), str(r["dimension"]), str(r["member"])))
    known = list(windows)
    return {
        "as_of": as_of,
        "generated_at": iso(now_ms),
        "min_sample": min_sample,
        "windows": known + sorted(w for w in seen_windows if isinstance(w, str) and w not in known),
        "dimensions": sorted(d for d in seen_dims if isinstance(d, str)),
        "window": window,
        "scores": scores,
        "alerts": firing_alerts(cache.alerts.values()),
        "feed": {
            "connected": cache.connected,
            "records": cache.records,
            "rejected": cache.rejected,
            "last_record_at": None if cache.last_record_ms is None else iso(cache.last_record_ms),
        },
    }


def _csv(text: str | None) -> list[str] | None:
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    return parts or None


# --- the consumer --------------------------------------------------------------------------------


async def run_feed(cache: LiveCache, bootstrap: str) -> None:
    """Fold ``cx.scores`` and ``cx.alerts`` into ``cache`` until cancelled (worker shutdown)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    while True:
        # No group: every worker reads every partition, and nothing is committed.
        consumer = AIOKafkaConsumer(
            SCORES,
            ALERTS,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            await consumer.start()
            cache.connected = True
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                now_ms = int(time.time() * 1000)
                for tp, messages in batch.items():
                    for m in messages:
                        apply_message(cache, tp.topic, m.key, m.value, now_ms)
        except KafkaError as exc:
            # Broker unreachable or a fatal fetch error: the page shows stale data and the
            # "disconnected" state meanwhile. Reading again from the beginning is harmless:
            # latest-per-key converges to the same state and histories skip older points.
            log.warning("live feed: %r; retrying in %.0f s", exc, RETRY_S)
        finally:
            cache.connected = False
            await consumer.stop()
        await asyncio.sleep(RETRY_S)


# --- Faust wiring --------------------------------------------------------------------------------


def load_assets() -> dict[str, str]:
    """The page's files, read once. A missing file (an install without the package data) costs
    the page, not the worker: its route answers 503 and /api/scores still works."""
    assets = {}
    for name in ASSETS:
        try:
            assets[name] = (STATIC_DIR / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            log.error("live page: %s not found in %s", name, STATIC_DIR)
    return assets


def register(app: faust.App, ctx: Context) -> LiveCache:
    """Routes ``/``, ``/live``, ``/static/live.{js,css}``, ``/api/scores`` and the feed task."""
    settings = ctx.settings
    cache = LiveCache()
    assets = load_assets()

    def asset(name: str, content_type: str) -> Any:
        async def handler(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            if name not in assets:
                return view.text(f"{name} is missing from this installation of cx-pulse"
                                 " (package data streams/static/)", status=503)  # fmt: skip
            return view.text(assets[name], content_type=content_type,
                             headers={"Cache-Control": "no-cache"})  # fmt: skip

        return handler

    async def api_scores(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        q = request.query
        body = snapshot(
            cache,
            now_ms=int(time.time() * 1000),
            windows=settings.windows,
            min_sample=settings.min_sample,
            window=q.get("window") or None,
            dimensions=_csv(q.get("dimension")),
            metrics=_csv(q.get("metric")),
            history=q.get("history", "1") not in ("0", "false", "no"),
        )
        return view.bytes(codecs.dumps(body), content_type="application/json",
                          headers={"Cache-Control": "no-store"})  # fmt: skip

    page = asset("index.html", "text/html")
    # Faust's production-index blueprint also mounts "/" (at server start, after this): aiohttp
    # resolves a path to the first resource registered for it, so this page wins. aiohttp would
    # instead *merge* into the last resource if it had the same path and then refuse the second
    # GET, so "/" must never be the last route registered here.
    app.page("/", name="cx_live_root")(page)
    app.page("/live", name="cx_live")(page)
    app.page("/static/live.js", name="cx_live_js")(asset("live.js", "application/javascript"))
    app.page("/static/live.css", name="cx_live_css")(asset("live.css", "text/css"))
    app.page("/api/scores", name="cx_api_scores")(api_scores)

    async def live_feed() -> None:
        await run_feed(cache, settings.bootstrap)

    app.task(live_feed)
    return cache
