"""A real Prometheus scraping real workers: every dashboard query and recording rule has data.

The stack of ``docker-compose.yml`` minus Docker: a broker of its own (the cx.* topic names are
fixed), two workers in one consumer group, the generator (``cxpulse generate --realtime
--scenario demo``: history, live traffic, a detractor spike, support tickets, cancellations)
plus a few malformed records, and the Debian ``prometheus`` binary running
``deploy/prometheus/prometheus.yml`` with only its targets rewritten (1 s scrape and rule
evaluation, no Alertmanager) and the rules of ``deploy/prometheus/rules/`` (groups' own
``interval`` dropped so they evaluate every second too). Every panel expression of every
dashboard, with the template variables set as Grafana would (``$__rate_interval`` = 1m), and
every recording rule must return data within about a minute of scraping.

Time-bounded exceptions, both explicit below: a recording rule without data is checked through
its expression with ranges of an hour or more shortened to ``[1m]`` (``shorten_ranges``: a 7d
baseline over a minute of samples); panels that read only ``cx_alerts_firing`` are skipped,
with the reason, while no worker exports that series (it exists once an alert episode opened).

Needs ``prometheus``/``promtool`` (Debian package ``prometheus``, ``scripts/ensure-tools.sh``):
skipped without them, failed when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from streams.broker import EmbeddedBroker, free_port
from streams.settings import Settings
from streams.topics import SURVEY_RESPONSES, create_topics, topic_specs
from tests.integration import harness

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
WORKERS = ("worker-1", "worker-2")  # the compose service names the committed config scrapes

# Grafana's built-in intervals at a 1 s scrape: rate() over 1m has ~60 samples.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
DATA_TIMEOUT_S = 120.0  # from the first scrape until every query must have answered
# Series a healthy worker only exports after something happened that this run cannot force.
CONDITIONAL = {"cx_alerts_firing": "exported once an alert episode opened"}


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} not installed (Debian package prometheus; scripts/ensure-tools.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def builder() -> ModuleType:
    path = ROOT / "deploy" / "grafana" / "build_dashboards.py"
    spec = importlib.util.spec_from_file_location("build_dashboards", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variable_values(dash: dict[str, Any]) -> dict[str, str]:
    """What Grafana substitutes by default: the current value, or ``.*`` for "All"."""
    values = dict(BUILTINS)
    for var in dash["templating"]["list"]:
        if var.get("includeAll"):
            values[var["name"]] = var["allValue"]
        elif var["type"] == "query":
            values[var["name"]] = var["current"]["value"]
    return values


def dashboard_queries() -> list[tuple[str, str, str]]:
    """``(dashboard, panel, expression with variables expanded)``; a template variable's
    ``label_values(selector, label)`` is checked as its selector."""
    b = builder()
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text(encoding="utf-8"))
        values = variable_values(dash)
        out += [(path.name, t, b.expand(e, values)) for t, e in b.targets(dash)]
        for var in dash["templating"]["list"]:
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", var.get("definition", ""))
            if m:
                out.append((path.name, f"${var['name']}", b.expand(m.group(1), values)))
    return out


def recording_rules() -> list[tuple[str, str]]:
    rules = []
    for path in sorted(RULES.glob("*.yml")) if RULES.is_dir() else []:
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            rules += [(r["record"], r["expr"]) for r in group.get("rules", []) if "record" in r]
    return rules


def render_config(targets: dict[str, str], rule_files: list[str]) -> dict[str, Any]:
    """The committed prometheus.yml with every static target mapped through ``targets`` (a
    KeyError for an unknown one), 1 s scrapes and rule evaluation, ``rule_files`` and no
    Alertmanager. Everything else (job names, paths, labels) stays as committed."""
    conf = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    # 2 s: a worker folding a big batch on a loaded 2-core CI machine can answer /metrics late.
    conf["global"].update(scrape_interval="2s", scrape_timeout="2s", evaluation_interval="1s")
    conf["rule_files"] = rule_files
    conf.pop("alerting", None)
    for job in conf["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = [targets[t] for t in static["targets"]]
    return conf  # type: ignore[no-any-return]


def render_rules(out_dir: Path) -> list[str]:
    """The repository's rule files, unchanged but for the groups' own ``interval`` (the 7d
    groups run every 2m): every group follows the 1 s evaluation of the test."""
    out_dir.mkdir()
    for path in sorted(RULES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            group.pop("interval", None)
        (out_dir / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return [str(out_dir / "*.yml")]


def shorten_ranges(expr: str) -> str:
    """A rule over days of history evaluated over the last minute: ranges >= 1h become 1m and
    offsets disappear. A test run has about a minute of samples."""
    expr = re.sub(r"\boffset\s+-?\d+[smhdwy]\w*", "", expr)
    return re.sub(r"\[\s*\d+[hdwy]\w*\s*(:[^\]]*)?\]", "[1m]", expr)


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float

    def query(self, expr: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # 400/422: a PromQL error, with the reason
            body = json.load(e)
        if body["status"] != "success":
            raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]  # type: ignore[no-any-return]

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
            return r.status == 200

    def series_names(self) -> set[str]:
        with urllib.request.urlopen(f"{self.url}/api/v1/label/__name__/values", timeout=10) as r:
            return set(json.load(r)["data"])

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


@dataclass
class Stack:
    prometheus: Prometheus
    workers: list[harness.Worker]

    def wait_for_data(self, expr: str, timeout: float = DATA_TIMEOUT_S) -> list[dict[str, Any]]:
        """The query's result once non-empty, or the empty result ``timeout`` seconds after
        Prometheus started (a deadline shared by all queries)."""
        deadline = self.prometheus.started + timeout
        while True:
            result = self.prometheus.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(1.0)

    def diagnostics(self) -> str:
        alive = {w.log_path.stem: w.alive() for w in self.workers}
        return (
            f"workers alive: {alive}\n--- prometheus\n{self.prometheus.log_tail()}\n"
            + "\n".join(f"--- {w.log_path.name}\n{w.log_tail(15)}" for w in self.workers)
        )


def _malformed() -> list[tuple[str, bytes, bytes | None]]:
    """Dead letters of several reasons, so cx_dead_letters_total has series."""
    out_of_scale = {
        "response_id": "r-y",
        "customer_id": "c-bad-3",
        "survey": "nps",
        "score": 42,
        "occurred_at": "2026-11-22T10:00:00Z",
    }
    return [
        (SURVEY_RESPONSES, b"c-bad-1", b"not json"),
        (SURVEY_RESPONSES, b"c-bad-2", b'{"response_id": "r-x", "survey": "nps"}'),
        (SURVEY_RESPONSES, b"c-bad-3", json.dumps(out_of_scale).encode()),
    ]


def _start_prometheus(binary: str, tmp: Path, targets: dict[str, str], log: Any) -> Prometheus:
    config = tmp / "prometheus.yml"
    conf = render_config(targets, render_rules(tmp / "rules"))
    config.write_text(yaml.safe_dump(conf, sort_keys=False))
    port = targets["localhost:9090"].rsplit(":", 1)[1]
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, Path(log.name), time.monotonic())
    harness.wait_until(prom.ready, 30, "prometheus ready", prom.log_tail)
    return prom


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus-scrape")
    procs: list[subprocess.Popen[bytes]] = []
    workers: list[harness.Worker] = []
    logs = []
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        settings = Settings(
            broker=broker.url,
            app_id="cx-prom",
            partitions=4,
            min_sample=5,
            emit_interval=0.5,
            session_timeout=6.0,
            batch_within=0.1,
        )
        env = {**os.environ, **harness.settings_env(settings), "CX_LOGLEVEL": "warning"}
        try:
            asyncio.run(create_topics(broker.bootstrap, topic_specs(settings)))
            workers += [harness.Worker(settings, tmp, name) for name in WORKERS]
            harness.wait_until(
                lambda: all(w.samples() is not None for w in workers),
                60,
                "workers serving /metrics",
                lambda: "".join(w.log_tail() for w in workers),
            )
            # The compose `generator` service, at a rate that keeps the test short: 10 min of
            # history at once, then live events; the enterprise detractor spike starts at 20 s.
            logs.append(open(tmp / "generator.log", "ab"))  # noqa: SIM115 - closed in finally
            cmd = ["generate", "--realtime", "--scenario", "demo", "--count", "0", "--rate", "20"]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "streams.cli", *cmd],
                    cwd=ROOT,
                    env=env,
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                )
            )
            asyncio.run(harness.produce(broker.bootstrap, _malformed()))

            targets = {
                f"{n}:6066": f"127.0.0.1:{w.port}" for n, w in zip(WORKERS, workers, strict=True)
            }
            targets["localhost:9090"] = f"127.0.0.1:{free_port()}"
            logs.append(open(tmp / "prometheus.log", "ab"))  # noqa: SIM115 - closed in finally
            prom = _start_prometheus(prometheus_bin, tmp, targets, logs[-1])
            procs.append(prom.proc)
            up = 'count(up{job="cx-pulse"} == 1)'
            harness.wait_until(
                lambda: [r["value"][1] for r in prom.query(up)] == [str(len(WORKERS))],
                120,
                "every worker scraped",
                prom.log_tail,
            )
            yield Stack(prom, workers)
        finally:
            for p in reversed(procs):
                _stop(p)
            for w in workers:
                w.stop()
            for f in logs:
                f.close()


# --- tests -----------------------------------------------------------------------------------


def test_promtool_accepts_the_committed_config(tmp_path: Path) -> None:
    promtool = require("promtool")
    # As committed (rule_files is a container path: a glob without matches is fine) ...
    checks = [PROMETHEUS_YML]
    # ... and with rule_files pointing at the repository's rules, so they are loaded too.
    conf = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    conf["rule_files"] = [str(RULES / "*.yml")]
    checks.append(tmp_path / "prometheus.yml")
    checks[-1].write_text(yaml.safe_dump(conf, sort_keys=False))
    for path in checks:
        result = subprocess.run(
            [promtool, "check", "config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{path}:\n{result.stdout}{result.stderr}"


def test_rendered_config_keeps_everything_but_the_targets() -> None:
    committed = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    targets = {
        "worker-1:6066": "127.0.0.1:1",
        "worker-2:6066": "127.0.0.1:2",
        "localhost:9090": "127.0.0.1:3",
    }
    rendered = render_config(targets, ["/tmp/rules/*.yml"])
    jobs = [j["job_name"] for j in rendered["scrape_configs"]]
    assert jobs == [j["job_name"] for j in committed["scrape_configs"]]
    workers = rendered["scrape_configs"][jobs.index("cx-pulse")]["static_configs"][0]
    assert workers["targets"] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert "alerting" not in rendered and rendered["global"]["scrape_interval"] == "2s"
    with pytest.raises(KeyError):  # a target added to the committed file must be mapped here
        render_config({"worker-1:6066": "127.0.0.1:1"}, [])


def test_shorten_ranges() -> None:
    assert shorten_ranges("rate(x[7d]) / rate(x[5m] offset 1w)") == "rate(x[1m]) / rate(x[5m] )"
    assert shorten_ranges("avg_over_time(y[1h:1m])") == "avg_over_time(y[1m])"


@pytest.mark.parametrize("dashboard, panel, expr", dashboard_queries())
def test_dashboard_query_returns_data(stack: Stack, dashboard: str, panel: str, expr: str) -> None:
    reads = set(re.findall(r"\bcx_\w+", expr))
    if reads and reads <= set(CONDITIONAL):
        # Only series that need an event this run cannot force: wait less, then tell.
        if not stack.wait_for_data(expr, timeout=45.0):
            absent = reads - stack.prometheus.series_names()
            assert absent, f"{panel}: series exist but the query selects nothing:\n  {expr}"
            pytest.skip(
                f"{panel}: no {', '.join(sorted(absent))} series yet "
                f"({'; '.join(CONDITIONAL[m] for m in sorted(absent))})"
            )
        return
    result = stack.wait_for_data(expr)
    assert result, f"{dashboard} / {panel}: no data for\n  {expr}\n{stack.diagnostics()}"


@pytest.mark.parametrize("record, expr", recording_rules())
def test_recording_rule_returns_data(stack: Stack, record: str, expr: str) -> None:
    if stack.wait_for_data(record):
        return
    # Rules over long ranges (7d baselines) have data after ~1 min of history only when the
    # range is shortened: check the rule's expression that way (documented in the docstring).
    short = shorten_ranges(expr)
    assert short != expr and stack.prometheus.query(short), (
        f"{record}: no data, nor for its expression with ranges shortened:\n  {short}\n"
        f"{stack.diagnostics()}"
    )
