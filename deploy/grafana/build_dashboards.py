"""Build the Grafana dashboards in ``deploy/grafana/dashboards/`` from code.

    python deploy/grafana/build_dashboards.py           # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check   # exit 1 if a committed file is stale

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39, Grafana 10.x/11.x); no SDK
dependency. ``tests/unit/test_deploy.py`` checks that the committed files equal this output and
that every query uses only metric names the worker exports (SPEC §7, ``streams/telemetry.py``);
``tests/integration/test_prometheus_scrape.py`` runs every query against a real Prometheus
scraping a real worker.

Conventions: template variables ``$window`` (one score window), ``$segment`` / ``$channel``
(multi-select, "All" = ``.*``, so always matched with ``=~``); counters go through
``rate(...[$__rate_interval])``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "[$__rate_interval]"
JOB = 'job="cx-pulse"'  # the scrape job of deploy/prometheus/prometheus.yml

Panel = dict[str, Any]


# --- building blocks -------------------------------------------------------------------------


def query(expr: str, legend: str = "__auto", *, instant: bool = False) -> dict[str, Any]:
    """One Prometheus target; refIds are assigned by the panel."""
    target: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
    if instant:
        target.update(instant=True, range=False, format="table")
    else:
        target.update(instant=False, range=True)
    return target


def _with_ref_ids(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)]


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


NEUTRAL = _thresholds((None, "text"))


def _panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    description: str,
    defaults: dict[str, Any],
    options: dict[str, Any],
    overrides: list[dict[str, Any]] | None = None,
) -> Panel:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _with_ref_ids(targets),
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options,
    }


def timeseries(
    title: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    description: str = "",
    decimals: int | None = None,
    min_: float | None = None,
    max_: float | None = None,
    stack: bool = False,
    overrides: list[dict[str, Any]] | None = None,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10 if stack else 0,
            "showPoints": "never",
            "spanNulls": False,  # a null score (n < min_sample) is a gap, not a line
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
        "thresholds": NEUTRAL,
        "color": {"mode": "palette-classic"},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    options = {
        "legend": {
            "displayMode": "table",
            "placement": "right",
            "showLegend": True,
            "calcs": ["lastNotNull"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel("timeseries", title, targets, description, defaults, options, overrides)


def stat(
    title: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    description: str = "",
    decimals: int | None = None,
    thresholds: dict[str, Any] = NEUTRAL,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": thresholds,
        "color": {"mode": "thresholds"},
        "noValue": "n < min_sample",
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "textMode": "auto",
        "orientation": "auto",
    }
    return _panel("stat", title, targets, description, defaults, options)


def table(
    title: str,
    targets: list[dict[str, Any]],
    *,
    description: str = "",
    columns: dict[str, str],
    hide: tuple[str, ...] = ("Time", "__name__", "job", "instance"),
    overrides: list[dict[str, Any]] | None = None,
) -> Panel:
    """Instant queries joined on their labels; ``columns`` renames ``Value #<refId>``."""
    panel = _panel(
        "table",
        title,
        targets,
        description,
        {"thresholds": NEUTRAL, "custom": {"align": "auto"}},
        {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
        overrides,
    )
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                "excludeByName": dict.fromkeys(hide, True),
                "renameByName": columns,
                "indexByName": {},
            },
        },
    ]
    return panel


def ci_band(value: str, low: str, high: str) -> list[dict[str, Any]]:
    """Overrides that draw the 95 % interval as a shaded band between two invisible lines."""

    def by_name(name: str, props: dict[str, Any]) -> dict[str, Any]:
        return {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": k, "value": v} for k, v in props.items()],
        }

    hidden = {
        "custom.lineWidth": 0,
        "custom.hideFrom": {"legend": True, "tooltip": False, "viz": False},
    }
    return [
        by_name(value, {"custom.lineWidth": 2}),
        by_name(low, {**hidden, "color": {"mode": "fixed", "fixedColor": "blue"}}),
        by_name(
            high,
            {
                **hidden,
                "color": {"mode": "fixed", "fixedColor": "blue"},
                "custom.fillBelowTo": low,
                "custom.fillOpacity": 15,
            },
        ),
    ]


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self.x = self.y = self.line_h = 0

    def _newline(self) -> None:
        self.y += self.line_h
        self.x = self.line_h = 0

    def add(self, panel: Panel, w: int = 24, h: int = 8) -> None:
        if panel["type"] == "row":
            self._newline()
            w, h = 24, 1
        elif self.x + w > 24:
            self._newline()
        panel = {
            "id": len(self.panels) + 1,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            **panel,
        }
        self.panels.append(panel)
        self.x += w
        self.line_h = max(self.line_h, h)


# --- template variables ----------------------------------------------------------------------


def datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "Prometheus", "value": "prometheus"},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_var(
    name: str, label: str, definition: str, *, all_: bool, current: str | None = None
) -> dict[str, Any]:
    """A variable filled from ``label_values(...)``; with ``all_``, "All" means ``.*``."""
    var: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": definition,
        "query": {"query": definition, "refId": f"{name}-values"},
        "refresh": 2,  # on time range change: members come and go
        "sort": 1,
        "regex": "",
        "hide": 0,
        "includeAll": all_,
        "multi": all_,
        "options": [],
    }
    if all_:
        var["allValue"] = ".*"
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        var["current"] = {"selected": True, "text": current, "value": current}
    return var


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[dict[str, Any]],
    layout: Layout,
    tags: list[str],
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "editable": True,
        "graphTooltip": 1,  # shared crosshair
        "refresh": "10s",
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "version": 1,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "CX Pulse",
                "type": "dashboards",
                "tags": ["cx-pulse"],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": [datasource_var(), *variables]},
        "panels": layout.panels,
    }


# --- CX overview -----------------------------------------------------------------------------


def score(
    metric: str, member_filter: str, *, series: str = "cx_score", window: str = "$window"
) -> str:
    """``cx_score``-family selector; ``member_filter`` is the dimension/member matcher and
    ``metric`` an alternation (``a|b``) becomes a regex match."""
    op = "=~" if "|" in metric else "="
    return f'{series}{{metric{op}"{metric}", window="{window}", {member_filter}}}'


ALL = 'dimension="all", member="all"'
SEGMENTS = 'dimension="segment", member=~"$segment"'
CHANNELS = 'dimension="channel", member=~"$channel"'
RESP = 'segment=~"$segment", channel=~"$channel"'

SCORES = {  # metric -> (title, unit, decimals, min, max)
    "nps": ("NPS", "none", 1, -100, 100),
    "csat": ("CSAT (% top-2-box)", "percent", 1, 0, 100),
    "ces": ("CES (mean, 1-7, higher = easier)", "none", 2, 1, 7),
}


def _score_with_ci(metric: str) -> Panel:
    title, unit, decimals, lo, hi = SCORES[metric]
    return timeseries(
        f"{title}, window $window, with 95% CI",
        [
            query(score(metric, ALL), title),
            query(score(metric, ALL, series="cx_score_ci95_low"), "95% CI low"),
            query(score(metric, ALL, series="cx_score_ci95_high"), "95% CI high"),
        ],
        unit=unit,
        decimals=decimals,
        min_=lo,
        max_=hi,
        overrides=ci_band(title, "95% CI low", "95% CI high"),
        description=f"{title} over the rolling $window window, all customers; the band is the "
        "95% confidence interval. Gaps: fewer than min_sample answers in the window.",
    )


def _score_by(metric: str, dim: str) -> Panel:
    title, unit, decimals, lo, hi = SCORES[metric]
    members = SEGMENTS if dim == "segment" else CHANNELS
    return timeseries(
        f"{title} by {dim}, window $window",
        [query(score(metric, members), "{{member}}")],
        unit=unit,
        decimals=decimals,
        min_=lo,
        max_=hi,
        description=f"{title} per {dim} over the rolling $window window (null below min_sample).",
    )


def _segment_or_channel(series: str) -> str:
    metrics = 'metric=~"nps|csat|ces", window="$window"'
    return f"{series}{{{metrics}, {SEGMENTS}}} or {series}{{{metrics}, {CHANNELS}}}"


def _detractor_share_counters() -> str:
    nps = f'survey="nps", {RESP}'
    return (
        f'100 * sum by (segment) (rate(cx_responses_total{{{nps}, category="detractor"}}{RATE}))'
        f" / sum by (segment) (rate(cx_responses_total{{{nps}}}{RATE}))"
    )


def _latency_quantiles(family: str) -> list[dict[str, Any]]:
    bucket = f'cx_support_{family}_seconds_bucket{{channel=~"$channel"}}'
    return [
        query(
            f"histogram_quantile(0.9, sum by (le, channel) (rate({bucket}{RATE})))",
            "p90 {{channel}}",
        ),
        query(f"histogram_quantile(0.5, sum by (le) (rate({bucket}{RATE})))", "p50 all channels"),
        query(f"histogram_quantile(0.9, sum by (le) (rate({bucket}{RATE})))", "p90 all channels"),
    ]


def overview() -> dict[str, Any]:
    lay = Layout()
    lay.add(row("Scores: window $window, all customers"))
    good_nps = _thresholds((None, "red"), (0, "orange"), (30, "green"))
    lay.add(
        stat(
            "NPS",
            [query(score("nps", ALL))],
            decimals=1,
            thresholds=good_nps,
            description="Net Promoter Score, -100..100, over the $window window.",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "CSAT",
            [query(score("csat", ALL))],
            unit="percent",
            decimals=1,
            thresholds=_thresholds((None, "red"), (70, "orange"), (80, "green")),
            description="Share of answers in the top two boxes.",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "CES",
            [query(score("ces", ALL))],
            decimals=2,
            thresholds=_thresholds((None, "red"), (4, "orange"), (5, "green")),
            description="Customer Effort Score, mean on 1-7 (higher = easier).",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Detractor share",
            [query(score("detractor_share", ALL))],
            unit="percent",
            decimals=1,
            thresholds=_thresholds((None, "green"), (25, "orange"), (35, "red")),
            description="Share of NPS answers 0-6.",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Churn rate",
            [query(score("churn_rate", ALL))],
            unit="percentunit",
            decimals=2,
            description="Customers who cancelled in the window / active "
            "customers at its start (needs the cx.customers topic).",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Alerts firing",
            [query("sum(cx_alerts_firing) or vector(0)")],
            thresholds=_thresholds((None, "green"), (1, "red")),
            description="Open alert episodes raised by the workers (cx.alerts).",
        ),
        4,
        4,
    )

    lay.add(row("Scores over time with 95% confidence intervals"))
    for metric in SCORES:
        lay.add(_score_with_ci(metric), 8, 9)

    lay.add(row("By segment and channel"))
    for dim in ("segment", "channel"):
        for metric in SCORES:
            lay.add(_score_by(metric, dim), 8, 8)
    lay.add(
        table(
            "Scores with 95% CI by segment and channel, window $window",
            [
                query(_segment_or_channel(s), instant=True)
                for s in ("cx_score", "cx_score_ci95_low", "cx_score_ci95_high", "cx_score_samples")
            ],
            columns={
                "Value #A": "value",
                "Value #B": "ci95 low",
                "Value #C": "ci95 high",
                "Value #D": "n",
            },
            description="Current values; n is the number of answers behind each value (a value "
            "is absent while n < min_sample).",
        ),
        24,
        9,
    )

    lay.add(row("Responses"))
    lay.add(
        timeseries(
            "Responses per second by survey and category",
            [
                query(
                    f"sum by (survey, category) (rate(cx_responses_total{{{RESP}}}{RATE}))",
                    "{{survey}} {{category}}",
                )
            ],
            unit="reqps",
            stack=True,
            description="Applied survey answers, summed over workers (cx_responses_total).",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Detractor share by segment",
            [
                query(_detractor_share_counters(), "{{segment}} (last $__rate_interval)"),
                query(score("detractor_share", SEGMENTS), "{{member}} (window $window)"),
            ],
            unit="percent",
            decimals=1,
            min_=0,
            max_=100,
            description="From the counters over the rate interval (recomputed across workers) "
            "and the windowed score.",
        ),
        12,
        8,
    )

    lay.add(row("Churn"))
    lay.add(
        timeseries(
            "Churn rate, window $window",
            [
                query(score("churn_rate", ALL), "all"),
                query(score("churn_rate", SEGMENTS), "{{member}}"),
            ],
            unit="percentunit",
            decimals=2,
            min_=0,
            description="Cancellations in the window / active customers at the window start.",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Cancellations in window $window by segment",
            [
                query(score("cancellations", SEGMENTS), "{{member}}"),
                query(score("lost_mrr", SEGMENTS), "lost MRR {{member}}"),
            ],
            description="Counts and lost monthly recurring revenue over the rolling window.",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Cancellations and lost MRR per hour",
            [
                query(
                    f'sum by (segment) (rate(cx_cancellations_total{{segment=~"$segment"}}{RATE})) * 3600',
                    "cancellations/h {{segment}}",
                ),
                query(
                    f'sum by (segment) (rate(cx_cancelled_mrr_total{{segment=~"$segment"}}{RATE})) * 3600',
                    "lost MRR/h {{segment}}",
                ),
            ],
            description="From the counters, summed over workers.",
        ),
        8,
        8,
    )

    lay.add(row("Support"))
    lay.add(
        timeseries(
            "Support p90 (seconds), window $window, all channels",
            [query(score("first_response_p90_s|resolution_p90_s", ALL), "{{metric}}")],
            unit="s",
            description="First response and resolution p90 over the rolling window (bucketed).",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "First response p90 by channel, window $window",
            [query(score("first_response_p90_s", CHANNELS), "{{member}}")],
            unit="s",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Resolution p90 by channel, window $window",
            [query(score("resolution_p90_s", CHANNELS), "{{member}}")],
            unit="s",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "First response time (histogram_quantile)",
            _latency_quantiles("first_response"),
            unit="s",
            description="From cx_support_first_response_seconds over the rate interval.",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Resolution time (histogram_quantile)",
            _latency_quantiles("resolution"),
            unit="s",
            description="From cx_support_resolution_seconds over the rate interval.",
        ),
        12,
        8,
    )

    lay.add(row("Alerts"))
    firing = table(
        "Alert episodes (1 = firing)",
        [query("max by (rule, dimension, member) (cx_alerts_firing)", instant=True)],
        columns={"Value": "firing"},
        description="cx_alerts_firing per rule and member; details are in the cx.alerts topic "
        "and in Alertmanager.",
    )
    firing["fieldConfig"]["defaults"]["mappings"] = [
        {
            "type": "value",
            "options": {
                "0": {"text": "resolved", "color": "green", "index": 0},
                "1": {"text": "FIRING", "color": "red", "index": 1},
            },
        }
    ]
    lay.add(firing, 12, 8)
    lay.add(
        timeseries(
            "Alerts firing by rule",
            [query("sum by (rule) (cx_alerts_firing)", "{{rule}}")],
            decimals=0,
            min_=0,
            stack=True,
        ),
        12,
        8,
    )

    return dashboard(
        "cx-overview",
        "CX Pulse: overview",
        "NPS, CSAT, CES, churn and support scores from the CX Pulse workers.",
        [
            query_var(
                "window",
                "Window",
                "label_values(cx_score_samples, window)",
                all_=False,
                current="1h",
            ),
            query_var(
                "segment",
                "Segment",
                'label_values(cx_score_samples{dimension="segment"}, member)',
                all_=True,
            ),
            query_var(
                "channel",
                "Channel",
                'label_values(cx_score_samples{dimension="channel"}, member)',
                all_=True,
            ),
        ],
        lay,
        ["cx-pulse", "cx"],
    )


# --- operations ------------------------------------------------------------------------------


def operations() -> dict[str, Any]:
    inst = 'instance=~"$instance"'
    topic = f'topic=~"$topic", {inst}'
    lay = Layout()
    lay.add(row("Health"))
    lay.add(
        stat(
            "Workers up",
            [query(f"sum(up{{{JOB}}})")],
            decimals=0,
            thresholds=_thresholds((None, "red"), (1, "green")),
            description="Scrape targets of the cx-pulse job answering /metrics.",
        ),
        5,
        4,
    )
    lay.add(
        stat(
            "Events/s",
            [query(f"sum(rate(cx_events_total{{{topic}}}{RATE}))")],
            unit="reqps",
            description="Input records consumed, every outcome.",
        ),
        5,
        4,
    )
    lay.add(
        stat(
            "Dead letters/s",
            [query(f"sum(rate(cx_dead_letters_total{{{topic}}}{RATE}))")],
            unit="reqps",
            thresholds=_thresholds((None, "green"), (0.1, "orange")),
            description="Records sent to cx.dead-letter.",
        ),
        5,
        4,
    )
    lay.add(
        stat(
            "Max watermark lag",
            [query(f"max(cx_watermark_lag_seconds{{{topic}}})")],
            unit="s",
            thresholds=_thresholds((None, "green"), (60, "orange"), (300, "red")),
            description="Wall clock minus the newest event time seen, worst topic.",
        ),
        5,
        4,
    )
    lay.add(
        stat(
            "Scores emitted/s",
            [query(f"sum(rate(cx_scores_emitted_total{{{inst}}}{RATE}))")],
            unit="reqps",
            description="Records published to cx.scores.",
        ),
        4,
        4,
    )

    lay.add(row("Throughput"))
    lay.add(
        timeseries(
            "Events by outcome",
            [query(f"sum by (outcome) (rate(cx_events_total{{{topic}}}{RATE}))", "{{outcome}}")],
            unit="reqps",
            stack=True,
            description="applied + duplicate + late + dead_letter = records consumed.",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Events by topic and worker",
            [
                query(
                    f"sum by (instance, topic) (rate(cx_events_total{{{topic}}}{RATE}))",
                    "{{instance}} {{topic}}",
                )
            ],
            unit="reqps",
            description="Partition balance across the consumer group.",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Dead letters by reason",
            [
                query(
                    f"sum by (topic, reason) (rate(cx_dead_letters_total{{{topic}}}{RATE}))",
                    "{{topic}} {{reason}}",
                )
            ],
            unit="reqps",
            stack=True,
            description="Malformed or rejected input; the records are in cx.dead-letter.",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Scores emitted per second",
            [
                query(
                    f"sum by (instance) (rate(cx_scores_emitted_total{{{inst}}}{RATE}))",
                    "{{instance}}",
                )
            ],
            unit="reqps",
            description="Throttled per key by CX_EMIT_INTERVAL.",
        ),
        12,
        8,
    )

    lay.add(row("Latency"))
    lay.add(
        timeseries(
            "Watermark lag by topic",
            [query(f"cx_watermark_lag_seconds{{{topic}}}", "{{instance}} {{topic}}")],
            unit="s",
            description="Wall clock minus the topic's event-time watermark, per worker.",
        ),
        12,
        8,
    )
    proc = f"cx_processing_seconds_bucket{{{inst}}}"
    lay.add(
        timeseries(
            "Processing time, ingest to score update",
            [
                query(f"histogram_quantile({q}, sum by (le) (rate({proc}{RATE})))", f"p{p}")
                for q, p in ((0.5, "50"), (0.9, "90"), (0.99, "99"))
            ],
            unit="s",
            description="Broker timestamp of the input to the score gauge update.",
        ),
        12,
        8,
    )

    lay.add(row("Workers"))
    lay.add(
        timeseries(
            "Scrape target up",
            [query(f"up{{{JOB}, {inst}}}", "{{instance}}")],
            decimals=0,
            min_=0,
            max_=1,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Score series per worker",
            [query(f"count by (instance) (cx_score_samples{{{inst}}})", "{{instance}}")],
            decimals=0,
            min_=0,
            description="Label cardinality: each stage-2 owner exports the scores of its members.",
        ),
        12,
        8,
    )

    return dashboard(
        "cx-operations",
        "CX Pulse: operations",
        "Throughput, dead letters, lag and processing time of the CX Pulse workers.",
        [
            query_var("instance", "Worker", f"label_values(up{{{JOB}}}, instance)", all_=True),
            query_var("topic", "Topic", "label_values(cx_events_total, topic)", all_=True),
        ],
        lay,
        ["cx-pulse", "operations"],
    )


# --- output ----------------------------------------------------------------------------------

DASHBOARDS = {"cx-overview.json": overview, "cx-operations.json": operations}


def render() -> dict[str, str]:
    """File name -> exact file text."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
