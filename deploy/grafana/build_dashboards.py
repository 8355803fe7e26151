"""Build the Grafana dashboards in ``deploy/grafana/dashboards/`` from code.

    python deploy/grafana/build_dashboards.py           # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check   # exit 1 if a committed file is stale

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39, Grafana 10.x/11.x): no SDK
dependency. ``tests/unit/test_deploy.py`` checks that the committed files equal this output and
that every query uses only metric names the worker exports (SPEC §7, ``streams/telemetry.py``);
``tests/integration/test_prometheus_scrape.py`` runs every query against a real Prometheus that
scrapes a real worker.

Conventions: ``$window`` is one score window; ``$segment``, ``$channel``, ``$instance`` and
``$topic`` are multi-select with "All" = ``.*``, so they are always matched with ``=~``; counters
go through ``rate(...[$__rate_interval])``, never raw.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "[$__rate_interval]"
JOB = 'job="cx-pulse"'  # the workers' scrape job in deploy/prometheus/prometheus.yml

Json = dict[str, Any]


# --- building blocks -------------------------------------------------------------------------


def query(expr: str, legend: str = "__auto", *, instant: bool = False) -> Json:
    """One Prometheus target; the panel assigns refIds A, B, C... in order."""
    mode = {"instant": True, "range": False, "format": "table"} if instant else {"range": True}
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, **mode}


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


NEUTRAL = thresholds((None, "text"))


def panel(kind: str, title: str, targets: list[Json], *, w: int, h: int, description: str = "",
          unit: str = "short", decimals: int | None = None, min_: float | None = None,
          max_: float | None = None, steps: Json = NEUTRAL, custom: Json | None = None,
          options: Json | None = None, overrides: list[Json] | None = None) -> Json:  # fmt: skip
    """A panel; ``w``/``h`` are its grid size, placed by :class:`Layout`."""
    limits = {"decimals": decimals, "min": min_, "max": max_}
    defaults: Json = {"unit": unit, "thresholds": steps, **{k: v for k, v in limits.items()
                                                            if v is not None}}  # fmt: skip
    if custom is not None:
        defaults["custom"] = custom
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": h, "w": w},
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }


def timeseries(title: str, *targets: Json, stack: bool = False, w: int = 12, h: int = 8,
               **kw: Any) -> Json:  # fmt: skip
    custom = {
        "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
        "showPoints": "never",
        "spanNulls": False,  # a null score (n < min_sample) is a gap, not an interpolated line
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }  # fmt: skip
    options = {
        "legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                   "calcs": ["lastNotNull"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }  # fmt: skip
    p = panel("timeseries", title, list(targets), w=w, h=h, custom=custom, options=options, **kw)
    p["fieldConfig"]["defaults"]["color"] = {"mode": "palette-classic"}
    return p


def stat(title: str, expr: str, *, w: int = 4, h: int = 4, **kw: Any) -> Json:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value", "graphMode": "area", "justifyMode": "auto", "textMode": "auto",
        "orientation": "auto",
    }  # fmt: skip
    p = panel("stat", title, [query(expr)], w=w, h=h, options=options, **kw)
    p["fieldConfig"]["defaults"].update(color={"mode": "thresholds"}, noValue="no data")
    return p


def table(title: str, *targets: Json, columns: dict[str, str], w: int = 24, h: int = 9,
          **kw: Any) -> Json:  # fmt: skip
    """Instant queries merged on their labels; ``columns`` renames ``Value #<refId>``."""
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    p = panel("table", title, list(targets), w=w, h=h, options=options, **kw)
    hidden = ("Time", "__name__", "job", "instance")
    p["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": dict.fromkeys(hidden, True),
                                       "renameByName": columns, "indexByName": {}}},
    ]  # fmt: skip
    return p


def ci_band(value: str, low: str, high: str) -> list[Json]:
    """Overrides drawing the 95 % interval as a band between two invisible lines."""

    def by_name(name: str, **props: Any) -> Json:
        return {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
        }

    blue = {"mode": "fixed", "fixedColor": "blue"}
    hide = {"legend": True, "tooltip": False, "viz": False}
    return [
        by_name(value, custom__lineWidth=2),
        by_name(low, custom__lineWidth=0, custom__hideFrom=hide, color=blue),
        by_name(high, custom__lineWidth=0, custom__hideFrom=hide, color=blue,
                custom__fillBelowTo=low, custom__fillOpacity=15),
    ]  # fmt: skip


def right_axis(ref_id: str, label: str) -> list[Json]:
    """Override: the series of query ``ref_id`` on a second y axis (another unit)."""
    props = {"custom.axisPlacement": "right", "custom.axisLabel": label}
    return [{"matcher": {"id": "byFrameRefID", "options": ref_id},
             "properties": [{"id": k, "value": v} for k, v in props.items()]}]  # fmt: skip


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24}}  # fmt: skip


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = self.y = self.line_h = 0

    def add(self, *panels: Json) -> Layout:
        for p in panels:
            w, h = p["gridPos"]["w"], p["gridPos"]["h"]
            if p["type"] == "row" or self.x + w > 24:
                self.y, self.x, self.line_h = self.y + self.line_h, 0, 0
            self.panels.append({"id": len(self.panels) + 1, **p,
                                "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}})  # fmt: skip
            self.x += w
            self.line_h = max(self.line_h, h)
        return self


def query_var(name: str, label: str, definition: str, *, current: str | None = None) -> Json:
    """A variable from ``label_values(...)``: one value (``current``) or multi with All = .*."""
    var: Json = {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "definition": definition, "query": {"query": definition, "refId": f"{name}-values"},
        "refresh": 2,  # on time range change: members come and go
        "sort": 1, "regex": "", "hide": 0, "options": [],
        "includeAll": current is None, "multi": current is None,
    }  # fmt: skip
    if current is None:
        var.update(allValue=".*", current={"selected": True, "text": ["All"],
                                           "value": ["$__all"]})  # fmt: skip
    else:
        var["current"] = {"selected": True, "text": current, "value": current}
    return var


def dashboard(uid: str, title: str, description: str, tags: list[str], variables: list[Json],
              layout: Layout) -> Json:  # fmt: skip
    datasource = {
        "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
        "current": {"text": "Prometheus", "value": "prometheus"}, "hide": 0, "refresh": 1,
        "regex": "", "options": [],
    }  # fmt: skip
    return {
        "uid": uid, "title": title, "description": description, "tags": tags,
        "editable": True, "graphTooltip": 1, "refresh": "10s", "schemaVersion": 39,
        "version": 1, "time": {"from": "now-3h", "to": "now"}, "timepicker": {},
        "timezone": "browser", "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "links": [{"title": "CX Pulse", "type": "dashboards", "tags": ["cx-pulse"],
                   "asDropdown": False, "includeVars": True, "keepTime": True}],
        "templating": {"list": [datasource, *variables]},
        "panels": layout.panels,
    }  # fmt: skip


# --- CX overview -----------------------------------------------------------------------------

ALL = 'dimension="all", member="all"'
SEGMENTS = 'dimension="segment", member=~"$segment"'
CHANNELS = 'dimension="channel", member=~"$channel"'
RESPONSES = 'segment=~"$segment", channel=~"$channel"'
SCORES = {  # metric -> title, unit, decimals, axis min, axis max
    "nps": ("NPS", "none", 1, -100, 100),
    "csat": ("CSAT (% top-2-box)", "percent", 1, 0, 100),
    "ces": ("CES (mean 1-7, higher = easier)", "none", 2, 1, 7),
}


def score(metric: str, members: str, series: str = "cx_score") -> str:
    """A ``cx_score``-family selector; ``metric`` may be an alternation ``a|b``."""
    op = "=~" if "|" in metric else "="
    return f'{series}{{metric{op}"{metric}", window="$window", {members}}}'


def score_with_ci(metric: str) -> Json:
    title, unit, decimals, lo, hi = SCORES[metric]
    return timeseries(
        f"{title}, window $window, with 95% CI",
        query(score(metric, ALL), title),
        query(score(metric, ALL, "cx_score_ci95_low"), "95% CI low"),
        query(score(metric, ALL, "cx_score_ci95_high"), "95% CI high"),
        w=8, h=9, unit=unit, decimals=decimals, min_=lo, max_=hi,
        overrides=ci_band(title, "95% CI low", "95% CI high"),
        description=f"{title} over the rolling $window window, all customers; the band is the "
        "95% confidence interval. Gaps: fewer than min_sample answers in the window.",
    )  # fmt: skip


def score_by(metric: str, dim: str) -> Json:
    title, unit, decimals, lo, hi = SCORES[metric]
    return timeseries(
        f"{title} by {dim}, window $window",
        query(score(metric, SEGMENTS if dim == "segment" else CHANNELS), "{{member}}"),
        w=8, unit=unit, decimals=decimals, min_=lo, max_=hi,
        description=f"{title} per {dim} over the rolling $window window (null below min_sample).",
    )  # fmt: skip


def by_segment_or_channel(series: str) -> Json:
    sel = 'metric=~"nps|csat|ces", window="$window"'
    return query(f"{series}{{{sel}, {SEGMENTS}}} or {series}{{{sel}, {CHANNELS}}}", instant=True)


def latency_quantiles(family: str) -> list[Json]:
    bucket = f'rate(cx_support_{family}_seconds_bucket{{channel=~"$channel"}}{RATE})'
    return [
        query(f"histogram_quantile(0.9, sum by (le, channel) ({bucket}))", "p90 {{channel}}"),
        query(f"histogram_quantile(0.5, sum by (le) ({bucket}))", "p50 all channels"),
        query(f"histogram_quantile(0.9, sum by (le) ({bucket}))", "p90 all channels"),
    ]


def overview() -> Json:
    nps_sel = f'survey="nps", {RESPONSES}'
    detractors = (
        f'100 * sum by (segment) (rate(cx_responses_total{{{nps_sel}, category="detractor"}}{RATE}))'
        f" / sum by (segment) (rate(cx_responses_total{{{nps_sel}}}{RATE}))"
    )
    per_hour = 'sum by (segment) (rate({}{{segment=~"$segment"}}' + RATE + ")) * 3600"
    lay = Layout()
    lay.add(
        row("Scores: window $window, all customers"),
        stat("NPS", score("nps", ALL), decimals=1,
             steps=thresholds((None, "red"), (0, "orange"), (30, "green")),
             description="Net Promoter Score (-100..100) over the $window window; no data while "
             "n < min_sample."),
        stat("CSAT", score("csat", ALL), unit="percent", decimals=1,
             steps=thresholds((None, "red"), (70, "orange"), (80, "green")),
             description="Share of answers in the top two boxes."),
        stat("CES", score("ces", ALL), decimals=2,
             steps=thresholds((None, "red"), (4, "orange"), (5, "green")),
             description="Customer Effort Score, mean on 1-7 (higher = easier)."),
        stat("Detractor share", score("detractor_share", ALL), unit="percent", decimals=1,
             steps=thresholds((None, "green"), (25, "orange"), (35, "red")),
             description="Share of NPS answers 0-6."),
        stat("Churn rate", score("churn_rate", ALL), unit="percentunit", decimals=2,
             description="Customers who cancelled in the window / active customers at its "
             "start (needs the cx.customers topic)."),
        stat("Alerts firing", "sum(cx_alerts_firing) or vector(0)",
             steps=thresholds((None, "green"), (1, "red")),
             description="Open alert episodes raised by the workers (cx.alerts)."),
    )  # fmt: skip
    lay.add(row("Scores over time with 95% confidence intervals"))
    lay.add(*(score_with_ci(m) for m in SCORES))
    lay.add(row("By segment and channel"))
    lay.add(*(score_by(m, dim) for dim in ("segment", "channel") for m in SCORES))
    lay.add(table(
        "Scores with 95% CI by segment and channel, window $window",
        *(by_segment_or_channel(s) for s in
          ("cx_score", "cx_score_ci95_low", "cx_score_ci95_high", "cx_score_samples")),
        columns={"Value #A": "value", "Value #B": "ci95 low", "Value #C": "ci95 high",
                 "Value #D": "n"},
        description="Current values; n is the number of answers behind each value (the value "
        "is absent while n < min_sample).",
    ))  # fmt: skip
    lay.add(
        row("Responses"),
        timeseries(
            "Responses per second by survey and category",
            query(f"sum by (survey, category) (rate(cx_responses_total{{{RESPONSES}}}{RATE}))",
                  "{{survey}} {{category}}"),
            unit="reqps", stack=True,
            description="Applied survey answers summed over workers (cx_responses_total)."),
        timeseries(
            "Detractor share by segment",
            query(detractors, "{{segment}}, last $__rate_interval"),
            query(score("detractor_share", SEGMENTS), "{{member}}, window $window"),
            unit="percent", decimals=1, min_=0, max_=100,
            description="From the counters over the rate interval (exact across workers) and "
            "the windowed score."),
    )  # fmt: skip
    lay.add(
        row("Churn"),
        timeseries(
            "Churn rate, window $window",
            query(score("churn_rate", ALL), "all"),
            query(score("churn_rate", SEGMENTS), "{{member}}"),
            w=8, unit="percentunit", decimals=2, min_=0,
            description="Cancellations in the window / active customers at the window start."),
        timeseries(
            "Cancellations in window $window by segment",
            query(score("cancellations", SEGMENTS), "{{member}}"),
            query(score("lost_mrr", SEGMENTS), "lost MRR {{member}}"),
            w=8, overrides=right_axis("B", "lost MRR"),
            description="Counts and lost monthly recurring revenue over the rolling window."),
        timeseries(
            "Cancellations and lost MRR per hour",
            query(per_hour.format("cx_cancellations_total"), "cancellations/h {{segment}}"),
            query(per_hour.format("cx_cancelled_mrr_total"), "lost MRR/h {{segment}}"),
            w=8, overrides=right_axis("B", "lost MRR/h"),
            description="From the counters, summed over workers."),
    )  # fmt: skip
    lay.add(
        row("Support"),
        timeseries(
            "Support p90, window $window, all channels",
            query(score("first_response_p90_s|resolution_p90_s", ALL), "{{metric}}"),
            w=8, unit="s", description="First response and resolution p90 over the window."),
        timeseries(
            "First response p90 by channel, window $window",
            query(score("first_response_p90_s", CHANNELS), "{{member}}"), w=8, unit="s"),
        timeseries(
            "Resolution p90 by channel, window $window",
            query(score("resolution_p90_s", CHANNELS), "{{member}}"), w=8, unit="s"),
        timeseries(
            "First response time (histogram_quantile)", *latency_quantiles("first_response"),
            unit="s", description="cx_support_first_response_seconds over the rate interval."),
        timeseries(
            "Resolution time (histogram_quantile)", *latency_quantiles("resolution"),
            unit="s", description="cx_support_resolution_seconds over the rate interval."),
    )  # fmt: skip
    episodes = table(
        "Alert episodes (1 = firing)",
        query("max by (rule, dimension, member) (cx_alerts_firing)", instant=True),
        columns={"Value": "state"}, w=12, h=8,
        description="cx_alerts_firing per rule and member; details are in the cx.alerts topic "
        "and in Alertmanager.",
    )  # fmt: skip
    episodes["fieldConfig"]["defaults"]["mappings"] = [{"type": "value", "options": {
        "0": {"text": "resolved", "color": "green", "index": 0},
        "1": {"text": "FIRING", "color": "red", "index": 1},
    }}]  # fmt: skip
    lay.add(
        row("Alerts"),
        episodes,
        timeseries("Alerts firing by rule", query("sum by (rule) (cx_alerts_firing)", "{{rule}}"),
                   decimals=0, min_=0, stack=True),
    )  # fmt: skip
    return dashboard(
        "cx-overview", "CX Pulse: overview",
        "NPS, CSAT, CES, churn and support scores from the CX Pulse workers.",
        ["cx-pulse", "cx"],
        [
            query_var("window", "Window", "label_values(cx_score_samples, window)", current="1h"),
            query_var("segment", "Segment",
                      'label_values(cx_score_samples{dimension="segment"}, member)'),
            query_var("channel", "Channel",
                      'label_values(cx_score_samples{dimension="channel"}, member)'),
        ],
        lay,
    )  # fmt: skip


# --- operations ------------------------------------------------------------------------------


def operations() -> Json:
    inst = 'instance=~"$instance"'
    topic = f'topic=~"$topic", {inst}'
    proc = f"rate(cx_processing_seconds_bucket{{{inst}}}{RATE})"
    lay = Layout()
    lay.add(
        row("Health"),
        stat("Workers up", f"sum(up{{{JOB}}})", w=5, decimals=0,
             steps=thresholds((None, "red"), (1, "green")),
             description="Targets of the cx-pulse scrape job answering /metrics."),
        stat("Events/s", f"sum(rate(cx_events_total{{{topic}}}{RATE}))", w=5, unit="reqps",
             description="Input records consumed, every outcome."),
        stat("Dead letters/s", f"sum(rate(cx_dead_letters_total{{{topic}}}{RATE}))", w=5,
             unit="reqps", steps=thresholds((None, "green"), (0.1, "orange")),
             description="Records sent to cx.dead-letter."),
        stat("Max watermark lag", f"max(cx_watermark_lag_seconds{{{topic}}})", w=5, unit="s",
             steps=thresholds((None, "green"), (60, "orange"), (300, "red")),
             description="Wall clock minus the newest event time seen, worst topic."),
        stat("Scores emitted/s", f"sum(rate(cx_scores_emitted_total{{{inst}}}{RATE}))",
             unit="reqps", description="Records published to cx.scores."),
    )  # fmt: skip
    lay.add(
        row("Throughput"),
        timeseries(
            "Events by outcome",
            query(f"sum by (outcome) (rate(cx_events_total{{{topic}}}{RATE}))", "{{outcome}}"),
            unit="reqps", stack=True,
            description="applied + duplicate + late + dead_letter = records consumed."),
        timeseries(
            "Events by topic and worker",
            query(f"sum by (instance, topic) (rate(cx_events_total{{{topic}}}{RATE}))",
                  "{{instance}} {{topic}}"),
            unit="reqps", description="Partition balance across the consumer group."),
        timeseries(
            "Dead letters by reason",
            query(f"sum by (topic, reason) (rate(cx_dead_letters_total{{{topic}}}{RATE}))",
                  "{{topic}} {{reason}}"),
            unit="reqps", stack=True,
            description="Malformed or rejected input; the records are in cx.dead-letter."),
        timeseries(
            "Scores emitted per second",
            query(f"sum by (instance) (rate(cx_scores_emitted_total{{{inst}}}{RATE}))",
                  "{{instance}}"),
            unit="reqps", description="Throttled per key by CX_EMIT_INTERVAL."),
    )  # fmt: skip
    lay.add(
        row("Latency"),
        timeseries(
            "Watermark lag by topic",
            query(f"cx_watermark_lag_seconds{{{topic}}}", "{{instance}} {{topic}}"), unit="s",
            description="Wall clock minus the topic's event-time watermark, per worker."),
        timeseries(
            "Processing time, ingest to score update",
            *(query(f"histogram_quantile({q}, sum by (le) ({proc}))", f"p{round(q * 100)}")
              for q in (0.5, 0.9, 0.99)),
            unit="s", description="Broker timestamp of the input to the score gauge update."),
    )  # fmt: skip
    lay.add(
        row("Workers"),
        timeseries("Scrape target up", query(f"up{{{JOB}, {inst}}}", "{{instance}}"),
                   decimals=0, min_=0, max_=1),
        timeseries(
            "Score series per worker",
            query(f"count by (instance) (cx_score_samples{{{inst}}})", "{{instance}}"),
            decimals=0, min_=0,
            description="Cardinality: each stage-2 owner exports the scores of its members."),
    )  # fmt: skip
    return dashboard(
        "cx-operations", "CX Pulse: operations",
        "Throughput, dead letters, lag and processing time of the CX Pulse workers.",
        ["cx-pulse", "operations"],
        [
            query_var("instance", "Worker", f"label_values(up{{{JOB}}}, instance)"),
            query_var("topic", "Topic", "label_values(cx_events_total, topic)"),
        ],
        lay,
    )  # fmt: skip


# --- reading dashboards back (used by the tests) ----------------------------------------------


def targets(dash: Json) -> list[tuple[str, str]]:
    """``(panel title, PromQL expression)`` of every query, rows' nested panels included."""
    out = []
    for p in dash["panels"]:
        for inner in (p, *p.get("panels", [])):
            out += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    return out


def expand(expr: str, values: Mapping[str, str]) -> str:
    """``$name`` and ``${name}`` replaced as Grafana would (KeyError for an unknown name)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


# --- output ----------------------------------------------------------------------------------

DASHBOARDS = {"cx-overview.json": overview, "cx-operations.json": operations}


def render() -> dict[str, str]:
    """File name -> exact file text."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the CX Pulse Grafana dashboards.")
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
        print(f"stale: {', '.join(stale)}; run python {__file__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
