"""The Prometheus rules in deploy/prometheus/rules: promtool's syntax check and unit tests, and
agreement of the metric names they read with what streams.telemetry exports (SPEC §7).

promtool comes from Debian's ``prometheus`` package (``scripts/ensure-tools.sh`` installs it).
Without it the promtool tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streams.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))

REQUIRED_ALERTS = {
    "NpsDrop",
    "CsatDrop",
    "DetractorSpike",
    "ChurnSpike",
    "FirstResponseSLO",
    "CxPulseDeadLetters",
    "CxPulseWatermarkLag",
    "CxPulseDown",
    "CxAlertFiring",
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not installed: run scripts/ensure-tools.sh (Debian package prometheus)"
        if _in_ci():
            pytest.fail(reason)
        pytest.skip(reason + "; with CI set this is a failure")
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_rule_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["cx-alerts.yml", "cx-recording.yml"]
    assert TEST_FILES


def test_promtool_check_rules(promtool: str) -> None:
    proc = _run([promtool, "check", "rules", *(str(p.relative_to(ROOT)) for p in RULE_FILES)])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count("SUCCESS") == len(RULE_FILES), out


def test_promtool_rule_unit_tests(promtool: str) -> None:
    proc = _run([promtool, "test", "rules", *(str(p.relative_to(ROOT)) for p in TEST_FILES)])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count("SUCCESS") == len(TEST_FILES), out
    assert "FAILED" not in out, out


def _exported_names() -> set[str]:
    """Names the telemetry bundle exports: family names and their series (``_total``, ...)."""
    registry = CollectorRegistry()
    Telemetry.create(registry)
    suffixes = {"counter": ("_total",), "histogram": ("", "_bucket", "_count", "_sum")}
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_rules_read_only_exported_metrics() -> None:
    exported = _exported_names()
    for path in RULE_FILES:
        text = "\n".join(
            line for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("#")
        )  # fmt: skip
        # raw series names: cx_* not part of a recorded name (level:metric:operations)
        raw = set(re.findall(r"(?<![\w:])(cx_[a-z0-9_]+)(?![\w:])", text))
        assert raw, path
        assert raw <= exported, f"{path.name} reads unexported metrics: {sorted(raw - exported)}"


def test_rule_structure() -> None:
    yaml = pytest.importorskip("yaml")
    alerts, records = [], []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            alerts += [r for r in group["rules"] if "alert" in r]
            records += [r["record"] for r in group["rules"] if "record" in r]
    assert {a["alert"] for a in alerts} >= REQUIRED_ALERTS
    for a in alerts:
        assert "for" in a, a["alert"]
        assert a["labels"]["severity"] in ("critical", "warning"), a["alert"]
        assert {"summary", "description"} <= set(a["annotations"]), a["alert"]
    # level:metric:operations, each recorded once
    assert all(re.fullmatch(r"[a-z_]+:cx_[a-z0-9_]+:[a-z0-9_]+", name) for name in records)
    assert len(records) == len(set(records))
