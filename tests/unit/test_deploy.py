"""The production stack in ``deploy/`` and ``docker-compose.yml``, checked by construction.

No Docker, Kafka, Grafana or Kubernetes here: every file is parsed and cross-checked against
the others and against the code (settings, CLI, console scripts, exported metric names).
``tests/integration/test_prometheus_scrape.py`` runs the Prometheus side for real.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections import Counter
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from streams.cli import build_parser
from streams.settings import Settings
from streams.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
RULES = DEPLOY / "prometheus" / "rules"
K8S = DEPLOY / "k8s"
DATA_DIR = "/var/lib/cxpulse"

# Series Prometheus itself attaches to every scrape target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
TARGET_LABELS = {"job", "instance"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


# --- loading ---------------------------------------------------------------------------------


@cache
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)  # type: ignore[no-any-return]


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]  # type: ignore[no-any-return]


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def k8s(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d.get("kind") == kind]


@cache
def builder() -> ModuleType:
    path = DEPLOY / "grafana" / "build_dashboards.py"
    spec = importlib.util.spec_from_file_location("build_dashboards", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS.glob("*.json")}


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def recording_rules() -> dict[str, str]:
    """record name -> expression, from deploy/prometheus/rules/*.yml (if any)."""
    records: dict[str, str] = {}
    for path in sorted(RULES.glob("*.yml")) if RULES.is_dir() else []:
        for group in (load_yaml(path) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    records[rule["record"]] = rule["expr"]
    return records


# --- what the worker exports -----------------------------------------------------------------


@cache
def exported() -> dict[str, set[str]]:
    """Every series name a worker can expose -> its label names (SPEC §7, streams/telemetry)."""
    tel = Telemetry.create(CollectorRegistry())
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
    }
    names: dict[str, set[str]] = {}
    for field in dataclasses.fields(tel):
        metric = getattr(tel, field.name)
        if not isinstance(metric, MetricWrapperBase):
            continue
        for family in metric.describe():
            labels = set(metric._labelnames)  # no public accessor in prometheus_client
            for suffix in suffixes[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                names[family.name + suffix] = labels | extra
    return names


def test_exported_names_are_the_spec_contract() -> None:
    spec = {
        "cx_score",
        "cx_score_samples",
        "cx_score_ci95_low",
        "cx_score_ci95_high",
        "cx_responses_total",
        "cx_cancellations_total",
        "cx_cancelled_mrr_total",
        "cx_support_first_response_seconds_bucket",
        "cx_support_resolution_seconds_bucket",
        "cx_events_total",
        "cx_dead_letters_total",
        "cx_alerts_firing",
        "cx_watermark_lag_seconds",
        "cx_processing_seconds_bucket",
        "cx_scores_emitted_total",
    }
    assert spec <= set(exported())
    assert exported()["cx_score"] == {"metric", "window", "dimension", "member"}
    assert exported()["cx_responses_total"] == {"survey", "category", "segment", "channel"}


# --- PromQL, just enough to find names -------------------------------------------------------

# PromQL words that look like metric names.
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "bool", "offset", "inf", "nan"}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """Metric names of a PromQL expression (identifiers not followed by '(' or inside {} [])."""
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _GROUPING.sub(" ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group().lower() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """``(metric, label names matched)`` for every ``metric{...}`` selector."""
    s = _STRING.sub('""', expr)
    return [
        (m.group(1), set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2))))
        for m in re.finditer(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", s)
    ]


def grouping_labels(expr: str) -> set[str]:
    s = _STRING.sub('""', expr)
    return {lbl.strip() for m in _GROUPING.finditer(s) for lbl in m.group(2).split(",") if lbl}


def test_promql_helpers() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, channel) (rate(x_bucket{channel=~"a|b"}'
        "[$__rate_interval]))) / on (job) group_left y or vector(0) * 1e3"
    )
    assert metric_names(expr) == {"x_bucket", "y"}
    assert selector_labels(expr) == [("x_bucket", {"channel"})]
    assert grouping_labels(expr) == {"le", "channel", "job"}


# --- YAML --------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return [COMPOSE, *sorted(DEPLOY.rglob("*.yml")), *sorted(DEPLOY.rglob("*.yaml"))]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs, f"{path} is empty"


# --- docker-compose.yml ---------------------------------------------------------------------


def bind_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for vol in svc.get("volumes", []):
        source, target = (
            (vol["source"], vol["target"])
            if isinstance(vol, dict)
            else (vol.split(":")[0], vol.split(":")[1])
        )
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def named_volumes(svc: dict[str, Any]) -> dict[str, str]:
    out = {}
    for vol in svc.get("volumes", []):
        source, target = vol.split(":")[:2]
        if not source.startswith((".", "/")):
            out[source] = target
    return out


def workers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if s.get("command", [None])[0] == "worker"}


def test_compose_bind_mounts_exist() -> None:
    for name, svc in services().items():
        for source, _target in bind_mounts(svc):
            assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name


def test_compose_references() -> None:
    declared = set(compose().get("volumes") or {})
    for name, svc in services().items():
        deps = svc.get("depends_on", [])
        for dep in deps:
            assert dep in services(), f"{name} depends on unknown service {dep}"
        for volume in named_volumes(svc):
            assert volume in declared, f"{name}: volume {volume} not declared"
        for dep, cond in deps.items() if isinstance(deps, dict) else []:
            assert cond["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if cond["condition"] == "service_healthy":
                assert services()[dep].get("healthcheck", {}).get("disable") is not True, dep


def test_compose_host_ports_do_not_collide() -> None:
    # "[ip:]host:container"; a port bound on 127.0.0.1 and on 0.0.0.0 collides too.
    seen = Counter(
        int(str(p).split(":")[-2]) for s in services().values() for p in s.get("ports", [])
    )
    assert seen, "no published ports"
    assert [p for p, n in seen.items() if n > 1] == []
    assert {6066, 6067} <= set(seen)  # the two workers' /metrics on the host


def test_compose_workers_form_one_group() -> None:
    ws = workers()
    assert set(ws) >= {"worker-1", "worker-2"}
    app_ids = {w["environment"]["CX_APP_ID"] for w in ws.values()}
    assert len(app_ids) == 1, app_ids
    data = [v for w in ws.values() for v, target in named_volumes(w).items() if target == DATA_DIR]
    assert len(data) == len(ws) == len(set(data)), "each worker needs its own state volume"
    for name, w in ws.items():
        assert w["environment"]["CX_BROKER"] == "kafka://kafka:9092", name
        assert [p.split(":")[-1] for p in w["ports"]] == ["6066"], name
        assert "/metrics" in " ".join(w["healthcheck"]["test"]), name


def test_compose_kafka_is_kraft_with_in_network_listener() -> None:
    env = services()["kafka"]["environment"]
    assert services()["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    listeners = {ln.split("://")[0] for ln in env["KAFKA_LISTENERS"].split(",")}
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert "healthcheck" in services()["kafka"]


def test_compose_commands_parse_with_the_cli() -> None:
    parser = build_parser()
    for name, svc in services().items():
        if svc.get("build"):
            args = parser.parse_args(svc["command"])
            assert callable(args.fn), name
    topics = services()["topics"]
    assert topics["command"] == ["topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    gen = services()["generator"]
    assert gen["profiles"] == ["generator"]
    assert gen["command"] == ["generate", "--realtime", "--scenario", "demo", "--count", "0"]


def cx_variables() -> list[tuple[str, str]]:
    """``(where, CX_NAME)`` of every CX_* variable set in compose, Dockerfile and k8s."""
    found = [(n, k) for n, s in services().items() for k in s.get("environment", {})]
    for args in instructions("ENV"):
        found += [("Dockerfile", k.split("=")[0]) for k in shlex.split(args)]
    for cm in k8s("ConfigMap"):
        found += [(cm["metadata"]["name"], k) for k in cm["data"]]
    return [(where, k) for where, k in found if k.startswith("CX_")]


def test_every_cx_variable_is_a_setting() -> None:
    fields = {f"CX_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    unknown = [(where, k) for where, k in cx_variables() if k not in fields]
    assert unknown == []


# --- Dockerfile ------------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_dockerfile_runs_the_console_script() -> None:
    entrypoint = json.loads(instructions("ENTRYPOINT")[-1])
    cmd = json.loads(instructions("CMD")[-1])
    assert entrypoint == ["cxpulse"] and cmd == ["worker"]
    assert entrypoint[0] in pyproject()["project"]["scripts"]
    build_parser().parse_args(cmd)
    assert instructions("FROM")[-1] == "${PYTHON_IMAGE}"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in [f"{w} {a}" for w, a in dockerfile()]
    assert instructions("EXPOSE") == [str(Settings().web_port)]
    user = instructions("USER")[-1].split(":")[0]
    assert user not in {"root", "0"}
    env = dict(kv.split("=", 1) for args in instructions("ENV") for kv in shlex.split(args))
    assert env["CX_STORE"] == "rocksdb://" and env["CX_DATA_DIR"] == DATA_DIR
    assert env["CX_WEB_HOST"] == "0.0.0.0"  # reachable by Prometheus from outside
    assert json.loads(instructions("VOLUME")[-1]) == [DATA_DIR]
    health = instructions("HEALTHCHECK")[-1]
    assert "urllib.request" in health and "/metrics" in health


def test_dockerfile_copies_existing_files_through_the_ignore_file() -> None:
    allowed = [
        ln[1:]
        for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if ln.startswith("!")
    ]
    for args in instructions("COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: missing in the repository"
            assert any(a == source or a.startswith(f"{source}/") for a in allowed), source


def test_dockerfile_extras_exist_in_pyproject() -> None:
    """``pip install ".[rocksdb]"``: pip only warns about an unknown extra, then the image
    silently lacks RocksDB; the extra must be declared."""
    extras = set(pyproject()["project"].get("optional-dependencies", {}))
    wanted = set()
    for args in instructions("RUN"):
        if "pip " in args:
            for group in re.findall(r"\[([\w,-]+)\]", args):
                wanted |= set(group.split(","))
    assert wanted, "the image installs no extra (rocksdb store)"
    assert wanted <= extras, f"declare {sorted(wanted - extras)} in [project.optional-dependencies]"


# --- Prometheus / Alertmanager -----------------------------------------------------------------


def prometheus_config() -> dict[str, Any]:
    return load_yaml(DEPLOY / "prometheus" / "prometheus.yml")  # type: ignore[no-any-return]


def mount_target(service: str, source: str) -> str:
    targets = [t for s, t in bind_mounts(services()[service]) if Path(s) == Path(source)]
    assert len(targets) == 1, f"{service} does not mount {source}"
    return targets[0]


def test_prometheus_scrapes_every_worker_and_loads_the_rules() -> None:
    conf = prometheus_config()
    jobs = {job["job_name"]: job for job in conf["scrape_configs"]}
    targets = [t for sc in jobs["cx-pulse"]["static_configs"] for t in sc["targets"]]
    assert sorted(targets) == sorted(f"{w}:6066" for w in workers())
    assert mount_target("prometheus", "./deploy/prometheus/prometheus.yml") == (
        "/etc/prometheus/prometheus.yml"
    )
    rules_dir = mount_target("prometheus", "./deploy/prometheus/rules")
    assert conf["rule_files"] == [f"{rules_dir}/*.yml"]
    am = [
        t
        for a in conf["alerting"]["alertmanagers"]
        for sc in a["static_configs"]
        for t in sc["targets"]
    ]
    assert am == ["alertmanager:9093"] and "alertmanager" in services()


def test_alertmanager_routes_to_defined_receivers() -> None:
    path = DEPLOY / "alertmanager" / "alertmanager.yml"
    assert mount_target("alertmanager", "./deploy/alertmanager/alertmanager.yml") == (
        "/etc/alertmanager/alertmanager.yml"
    )
    conf = load_yaml(path)
    receivers = {r["name"] for r in conf["receivers"]}
    routes = [conf["route"], *conf["route"].get("routes", [])]
    assert {r["receiver"] for r in routes} <= receivers
    assert any(r.get("webhook_configs") for r in conf["receivers"])
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (Debian package prometheus-alertmanager) not installed")
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana ---------------------------------------------------------------------------------


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    prov = mount_target("grafana", "./deploy/grafana/provisioning")
    assert prov == "/etc/grafana/provisioning"
    dash_dir = mount_target("grafana", "./deploy/grafana/dashboards")
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/cx-pulse.yml")
    assert [p["options"]["path"] for p in provider["providers"]] == [dash_dir]
    home = services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DASHBOARDS / Path(home).relative_to(dash_dir)).is_file()
    sources = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    prom = next(d for d in sources if d["type"] == "prometheus")
    assert prom["url"] == "http://prometheus:9090" and "prometheus" in services()
    for name, dash in dashboards().items():
        ds = next(v for v in dash["templating"]["list"] if v["type"] == "datasource")
        assert ds["current"]["value"] == prom["uid"], name


def test_committed_dashboards_are_the_builder_output() -> None:
    rendered = builder().render()
    assert (
        set(rendered)
        == {p.name for p in DASHBOARDS.glob("*.json")}
        == {"cx-overview.json", "cx-operations.json"}
    )
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run python deploy/grafana/build_dashboards.py"
        )


def dashboard_queries() -> list[tuple[str, str, str]]:
    """``(dashboard, panel or variable, PromQL)``; label_values() becomes its selector."""
    out = []
    for name, dash in sorted(dashboards().items()):
        out += [(name, title, expr) for title, expr in builder().targets(dash)]
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"])
                assert m, var["definition"]
                out.append((name, f"${var['name']}", m.group(1)))
    return out


@pytest.mark.parametrize("dash, title, expr", dashboard_queries())
def test_dashboard_queries_use_exported_series(dash: str, title: str, expr: str) -> None:
    known = set(exported()) | PROMETHEUS_SERIES | set(recording_rules())
    names = metric_names(expr)
    assert names, f"no metric in {expr!r}"
    assert names <= known, f"{title}: unknown series {sorted(names - known)}"
    # Label names must exist on the series they filter, or the panel is silently empty.
    labels_of = {**exported(), **{n: set() for n in PROMETHEUS_SERIES}}
    for metric, labels in selector_labels(expr):
        if metric in labels_of:
            assert labels <= labels_of[metric] | TARGET_LABELS, f"{title}: {metric}{labels}"
    available = TARGET_LABELS.union(*(labels_of.get(n, set()) for n in names))
    if not names & set(recording_rules()):
        assert grouping_labels(expr) <= available, f"{title}: grouping by unknown labels"


def test_dashboard_variables_and_layout() -> None:
    for name, dash in dashboards().items():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        defined = set(variables) | GRAFANA_BUILTINS
        for title, expr in builder().targets(dash):
            used = set(re.findall(r"\$\{?(\w+)", expr))
            assert used <= defined, f"{name} {title}: undefined {used - defined}"
            # A multi-value variable expands to a regex (a|b, or .* for All): it needs =~.
            for var in re.findall(r'\w+\s*!?=\s*"\$\{?(\w+)', expr):
                assert not variables.get(var, {}).get("multi"), f"{name} {title}: ${var} needs =~"
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for p in dash["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{name}: {p['title']} overlaps another panel"
            cells |= mine


# --- Kubernetes ------------------------------------------------------------------------------


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def test_k8s_manifests_are_namespace_free_and_listed() -> None:
    for doc in k8s_docs():
        assert "namespace" not in doc.get("metadata", {}), doc["metadata"]
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    kinds = Counter(d["kind"] for d in k8s_docs())
    assert kinds["StatefulSet"] == kinds["Job"] == kinds["ConfigMap"] == 1
    assert kinds["Service"] == 2


def test_k8s_statefulset() -> None:
    (sts,) = k8s("StatefulSet")
    spec, pod = sts["spec"], sts["spec"]["template"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= pod_labels(sts).items()
    headless = [s for s in k8s("Service") if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [spec["serviceName"]]
    (container,) = pod["spec"]["containers"]
    build_parser().parse_args(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (cm,) = k8s("ConfigMap")
    assert [r["configMapRef"]["name"] for r in container["envFrom"]] == [cm["metadata"]["name"]]
    web_port = int(cm["data"]["CX_WEB_PORT"])
    assert ports == {"metrics": web_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/metrics"
        assert ports.get(get["port"], get["port"]) == web_port, probe
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
    assert int(notes["prometheus.io/port"]) == web_port
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    volumes = claims | {v["name"] for v in pod["spec"].get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[cm["data"]["CX_DATA_DIR"]] in claims
    assert set(mounts.values()) <= volumes
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert cm["data"]["CX_STORE"] == "rocksdb://" and cm["data"]["CX_WEB_HOST"] == "0.0.0.0"


def test_k8s_selectors_match_the_pods() -> None:
    (sts,) = k8s("StatefulSet")
    labels = pod_labels(sts).items()
    container_ports = {
        p["name"] for c in sts["spec"]["template"]["spec"]["containers"] for p in c["ports"]
    }
    for svc in k8s("Service"):
        assert svc["spec"]["selector"].items() <= labels, svc["metadata"]["name"]
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in container_ports | {6066}
    for pdb in k8s("PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels
    (job,) = k8s("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["topics", "create"]
    build_parser().parse_args(container["args"])
    # The Job's pods must not be picked up by the worker services.
    for svc in k8s("Service"):
        assert not svc["spec"]["selector"].items() <= pod_labels(job).items()
