"""``cxpulse bench`` end to end at a small size: its own broker, a worker, the JSON contract."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import orjson
import pytest

from streams import bench
from streams.settings import Settings

pytestmark = pytest.mark.integration

REQUIRED = (
    "events", "events_per_s", "raw_events_per_s", "ratio", "produce_per_s", "drain_s",
    "p50_latency_ms", "p99_latency_ms", "peak_rss_mb", "rss_start_mb", "rss_end_mb",
    "emit_interval_s", "partitions", "python", "faust", "cpu_us_per_event",
    "raw_cpu_us_per_event", "worker_cores_busy",
)  # fmt: skip
TEXT = ("python", "faust")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxpulse")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def test_bench_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    args = _args(
        "--events", "5000", "--latency-seconds", "3", "--latency-rate", "300",
        "--json", "--out", str(out), "--keep-logs", str(tmp_path / "logs"),
    )  # fmt: skip
    assert args.fn is bench.run

    code = bench.run(Settings(partitions=4), args)

    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = orjson.loads(captured.out.strip().splitlines()[-1])
    assert orjson.loads(out.read_bytes()) == result
    assert set(REQUIRED) <= set(result)
    for name in REQUIRED:
        if name in TEXT:
            assert isinstance(result[name], str) and result[name], name
            continue
        value = result[name]
        assert isinstance(value, int | float) and not isinstance(value, bool), name
        # drain_s is a difference of two clocks sampled ~50 ms apart: it may round to 0.
        assert math.isfinite(value) and (value >= 0 if name == "drain_s" else value > 0), (
            name,
            value,
        )
    assert result["events"] == 5000
    assert result["p50_latency_ms"] <= result["p99_latency_ms"]
    assert result["emit_interval_s"] == 0.1
    assert result["latency_events"] == 900
    # every produced message was counted by the worker, duplicates and late ones included
    assert result["produced"] == 5000 + 1000 + result["duplicates"]
