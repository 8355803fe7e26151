"""The live page end to end: a worker fed with generated traffic serves ``/api/scores`` with the
latest ``cx.scores`` record per key (plus history and the firing alerts of ``cx.alerts``), and
``/`` renders it in a real headless Chromium: after the page's JS ran, the DOM holds the NPS tile
with the number the API serves (the page updates from the API without a reload).

Needs Debian's ``chromium`` (``apt-get install -y --no-install-recommends chromium``): the
browser part is skipped without it, failed when ``CI`` is set. ``CX_UPDATE_SCREENSHOT=1`` also
writes the screenshot to ``docs/live-page.png``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.broker import EmbeddedBroker
from streams.generate import Spike, generate
from streams.settings import Settings
from streams.topics import ALERTS, create_topics, topic_specs
from tests.integration import harness

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "live-page.png"
TILE_METRICS = ("nps", "csat", "ces", "churn_rate", "first_response_p90_s")
SEGMENTS = {"enterprise", "mid-market", "smb", "consumer"}


@dataclass
class Stack:
    broker: EmbeddedBroker
    worker: harness.Worker
    messages: int

    def get(self, path: str) -> tuple[str, bytes]:
        url = f"http://127.0.0.1:{self.worker.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.headers.get("Content-Type", ""), r.read()

    def api(self, query: str = "") -> dict[str, Any]:
        return json.loads(self.get(f"/api/scores{query}")[1])  # type: ignore[no-any-return]

    def fail(self) -> str:
        return self.worker.log_tail(60)


def _alert(alert_id: str, state: str, updated_at: str, summary: str) -> dict[str, Any]:
    return {
        "alert_id": alert_id, "rule": "detractor_spike", "state": state, "severity": "critical",
        "metric": "nps", "window": "1h", "dimension": "segment", "member": "enterprise",
        "current": {"value": -12.0, "n": 320, "ci95_low": -21.5, "ci95_high": -2.5},
        "baseline": {"value": 31.0, "n": 4100, "window": "7d"}, "delta": -43.0,
        "evidence": {"test": "binomial_one_sided", "p_value": 1e-6},
        "started_at": updated_at, "updated_at": updated_at, "summary": summary,
    }  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A broker of its own (the cx.* topic names are fixed), one worker, ~7 minutes of traffic
    with a detractor spike in segment=enterprise, produced in slices so histories grow."""
    tmp = tmp_path_factory.mktemp("live")
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        settings = Settings(
            broker=broker.url, app_id="cx-live", partitions=2,
            dimensions=("all", "segment", "channel"), emit_interval=0.3, session_timeout=6.0,
            batch_within=0.1,
        )  # fmt: skip
        asyncio.run(create_topics(broker.bootstrap, topic_specs(settings)))
        worker = harness.Worker(settings, tmp)
        try:
            harness.wait_until(lambda: bool(worker.metrics_text()), 60, "worker web up",
                               worker.log_tail)  # fmt: skip
            now = int(time.time() * 1000)
            spike = Spike("enterprise", now - 180_000, now)
            messages = list(generate(5, 4000, now - 480_000, rate_per_s=10.0, spike=spike,
                                     customers=400))  # fmt: skip
            step = len(messages) // 8 + 1
            for i in range(0, len(messages), step):
                asyncio.run(harness.produce(broker.bootstrap, messages[i : i + step]))
                time.sleep(0.8)
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 120))
            later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 60))
            alerts = [
                _alert("it-firing", "firing", ts, "Detractor share for segment=enterprise is "
                       "52% in the last 1h vs 19% over 7d (p < 0.001)."),
                _alert("it-resolved", "firing", ts, "resolved later: must not be shown"),
                _alert("it-resolved", "resolved", later, "resolved later: must not be shown"),
            ]  # fmt: skip
            asyncio.run(harness.produce(broker.bootstrap, [
                (ALERTS, a["alert_id"].encode(), orjson.dumps(a)) for a in alerts
            ]))  # fmt: skip
            harness.wait_until(
                lambda: sum(harness.events_total([worker]).values()) >= len(messages),
                120, "everything folded", worker.log_tail,
            )  # fmt: skip
            yield Stack(broker, worker, len(messages))
            assert worker.alive(), worker.log_tail()
        finally:
            worker.stop()


def _latest_on_topic(bootstrap: str) -> dict[str, Any]:
    return {k.decode(): v for k, v in asyncio.run(harness.read_all(bootstrap, "cx.scores", 1.5))
            if k is not None}  # fmt: skip


def test_api_serves_latest_scores_with_history_for_all_and_segment(stack: Stack) -> None:
    content_type, _ = stack.get("/api/scores?window=1h")
    assert content_type.startswith("application/json")

    def settled() -> bool:
        doc = stack.api("?window=1h&dimension=all,segment")
        served = {r["key"]: r["value"] for r in doc["scores"]}
        on_topic = _latest_on_topic(stack.broker.bootstrap)
        wanted = {k: r["value"] for k, r in on_topic.items()
                  if r["window"] == "1h" and r["dimension"] in ("all", "segment")}  # fmt: skip
        return bool(served) and served == wanted

    # The API is the latest record per key of the topic (once emission has settled).
    harness.wait_until(settled, 60, "/api/scores == latest cx.scores", stack.fail)
    doc = stack.api("?window=1h&dimension=all,segment")
    recs = {(r["metric"], r["dimension"], r["member"]): r for r in doc["scores"]}
    assert {r["window"] for r in doc["scores"]} == {"1h"}
    assert {r["dimension"] for r in doc["scores"]} == {"all", "segment"}
    for metric in ("nps", "csat", "ces", "first_response_p90_s"):
        overall = recs[(metric, "all", "all")]
        assert isinstance(overall["value"], float), overall
        assert overall["n"] >= 30 and overall["history"], overall
        assert overall["history"][-1][1] == overall["value"]
    nps_segments = {
        m: r for (metric, d, m), r in recs.items() if metric == "nps" and d == "segment"
    }
    assert set(nps_segments) == SEGMENTS
    assert all(isinstance(r["value"], float) and r["ci95_low"] < r["value"] < r["ci95_high"]
               for r in nps_segments.values())  # fmt: skip
    assert "counts" not in recs[("nps", "all", "all")]
    assert doc["windows"] == ["5m", "1h", "24h", "7d", "30d"]
    assert doc["min_sample"] == 30 and doc["as_of"] and doc["feed"]["connected"]
    # Alerts: the latest state per alert_id decides; resolved episodes are not shown.
    ids = [a["alert_id"] for a in doc["alerts"]]
    assert "it-firing" in ids and "it-resolved" not in ids
    # No filter: every window and dimension.
    everything = stack.api("?history=0")
    assert {r["dimension"] for r in everything["scores"]} == {"all", "segment", "channel"}
    assert "history" not in everything["scores"][0]


def test_metrics_page_honours_name_filter(stack: Stack) -> None:
    """``/metrics?name[]=...`` serves those samples only (prometheus_client's own apps do), with
    the values of the full page: the bench polls it for ``cx_events_total`` alone."""

    def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip

    full = parse(stack.get("/metrics")[1].decode())
    query = "/metrics?name[]=cx_events_total&name[]=cx_score"
    content_type, body = stack.get(query)
    assert content_type.startswith("text/plain")
    some = parse(body.decode())
    assert {name for name, _ in some} == {"cx_events_total", "cx_score"}
    assert sum(v for (n, _), v in some.items() if n == "cx_events_total") == stack.messages
    # the same series as the full page, and (the worker is idle by now) the same counts
    assert {k for k in full if k[0] in ("cx_events_total", "cx_score")} == set(some)
    assert {k: v for k, v in full.items() if k[0] == "cx_events_total"} == {
        k: v for k, v in some.items() if k[0] == "cx_events_total"
    }
    assert len(full) > len(some)


def test_routes_serve_the_page_not_faust_index(stack: Stack) -> None:
    for path in ("/", "/live"):
        content_type, body = stack.get(path)
        assert content_type.startswith("text/html")
        assert b'<script src="/static/live.js"></script>' in body
    assert stack.get("/static/live.js")[0].startswith("application/javascript")
    assert stack.get("/static/live.css")[0].startswith("text/css")
    assert b"cx_events_total" in stack.get("/metrics")[1]


# --- the browser -------------------------------------------------------------------------------


def _chromium() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if path is None:
        message = "chromium not installed (apt-get install -y --no-install-recommends chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _browse(chromium: str, url: str, profile: Path, *extra: str) -> str:
    args = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1600,1000",
        "--virtual-time-budget=8000", *extra, url,
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done.stdout.decode()


class _Dom(HTMLParser):
    """Text per element of interest in the dumped DOM: tiles, breakdown cards, alerts."""

    def __init__(self) -> None:
        super().__init__()
        self.tiles: dict[str, dict[str, Any]] = {}
        self.cards: dict[str, list[str]] = {}
        self.alerts_text: list[str] = []
        self._stack: list[tuple[str, str]] = []  # (tag, role)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        role = ""
        if tag == "article" and a.get("data-metric"):
            role = f"tile:{a['data-metric']}"
            self.tiles[a["data-metric"] or ""] = {**a, "num": ""}
        elif tag == "section" and a.get("data-metric"):
            role = f"card:{a['data-metric']}"
            self.cards[a["data-metric"] or ""] = []
        elif tag == "div" and (a.get("class") or "").startswith("row"):
            role = "row"
        elif a.get("id") == "alert-list":
            role = "alerts"
        elif "num" in (a.get("class") or "").split():
            role = "num"
        if tag not in ("br", "hr", "img", "meta", "link", "input"):  # void: no end tag
            self._stack.append((tag, role))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        roles = [r for _t, r in self._stack if r]
        tile = next((r[5:] for r in roles if r.startswith("tile:")), None)
        card = next((r[5:] for r in roles if r.startswith("card:")), None)
        if tile and "num" in roles:
            self.tiles[tile]["num"] += data
        if card and "row" in roles:
            self.cards[card].append(data)
        if "alerts" in roles:
            self.alerts_text.append(data)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])  # type: ignore[return-value]


def test_page_renders_in_headless_chromium(stack: Stack, tmp_path: Path) -> None:
    chromium = _chromium()
    url = f"http://127.0.0.1:{stack.worker.port}/"
    harness.wait_until(
        lambda: any(r["metric"] == "nps" and r["value"] is not None
                    for r in stack.api("?window=1h&dimension=all")["scores"]),
        60, "an NPS value", stack.fail,
    )  # fmt: skip
    dom = _Dom()
    dom.feed(_browse(chromium, url, tmp_path / "profile-dom", "--dump-dom"))
    api = {r["metric"]: r for r in stack.api("?window=1h&dimension=all")["scores"]}

    # Before its JS runs the page has no tiles at all: these come from /api/scores.
    assert set(dom.tiles) == set(TILE_METRICS), dom.tiles
    nps = dom.tiles["nps"]
    assert nps["data-state"] == "ok", nps
    text = nps["num"].replace("\u2212", "-")
    assert text and float(text) == pytest.approx(api["nps"]["value"], abs=0.051), (nps, api["nps"])
    assert float(nps["data-value"]) == pytest.approx(api["nps"]["value"], abs=1e-6)
    for metric in TILE_METRICS:  # every tile drew something sensible, whatever its state
        tile = dom.tiles[metric]
        assert tile["data-state"] in ("ok", "low", "missing")
        assert tile["num"].strip(), tile
    assert set(dom.cards["nps"]) >= SEGMENTS, dom.cards["nps"]
    alerts = " ".join(dom.alerts_text)
    assert "52% in the last 1h" in alerts and "must not be shown" not in alerts

    shot = tmp_path / "live.png"
    _browse(chromium, url, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert _png_size(shot) == (1600, 1000)
    assert shot.stat().st_size > 30_000  # a blank dark page compresses to a few kB
    if os.environ.get("CX_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
