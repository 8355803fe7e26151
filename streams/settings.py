"""Settings: the only module that reads the environment.

One setting = one environment variable ``CX_<NAME>`` = one CLI option ``--<name>``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

DEFAULT_WINDOWS = ("5m", "1h", "24h", "7d", "30d")
DEFAULT_DIMENSIONS = ("all", "segment", "channel", "touchpoint", "region", "plan")

_RULES = ("nps_drop", "detractor_spike", "csat_drop", "ces_drop", "churn_spike",
          "first_response_slo")  # fmt: skip
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """Return the duration in seconds of ``"5m"``, ``"1h"``, ``"7d"``, ``"90s"``."""
    text = text.strip()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit():
        raise ValueError(f"bad duration {text!r} (use e.g. 5m, 1h, 7d)")
    seconds = int(text[:-1]) * _UNITS[text[-1]]
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Every knob of a worker. Build with :func:`from_env` (env + overrides)."""

    broker: str = "kafka://127.0.0.1:9092"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    data_dir: str = "./data"
    app_id: str = "cx-pulse"
    store: str = "memory://"
    partitions: int = 4
    min_sample: int = 30
    windows: tuple[str, ...] = DEFAULT_WINDOWS
    dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS
    max_members: int = 50
    emit_interval: float = 1.0
    # Stage 1 folds at most batch_size records at once, and waits at most batch_within seconds
    # after the previous batch for them: a replay folds full batches, live traffic smaller
    # ones. Per batch, each bucket it touched is written and sent on once, so bigger batches
    # cost less per event (1M bench, 2026-12-07: 20,000 against 5,000, 36.9 against 41.2 us of
    # CPU per event, peak RSS 481 against 435 MB; 50,000 took the peak over 500 MB).
    batch_size: int = 20000
    batch_within: float = 0.2
    # Records reach the agents as lists without Faust's per-record path (streams/delivery.py,
    # docs/performance-history.md); False: Faust's own path.
    batch_delivery: bool = True
    late_after_s: int = 300
    max_future_s: int = 300
    max_message_bytes: int = 65536
    session_timeout: float = 10.0
    # The worker stops (exit status 3) when one agent crashed this many times within
    # agent_crash_window seconds; 0: never (streams/supervision.py).
    max_agent_crashes: int = 5
    agent_crash_window: float = 300.0
    loglevel: str = "warning"
    # The live state is frozen out of the cyclic GC's scans; a full collection, which pauses
    # the worker (~0.85 us per live container), runs this often (streams/gcpolicy.py).
    gc_full_interval: float = 600.0
    # alert rules (SPEC §6); windows must be among `windows`
    alert_rules: tuple[str, ...] = (
        "nps_drop", "detractor_spike", "csat_drop", "ces_drop", "churn_spike",
        "first_response_slo",
    )  # fmt: skip
    alert_short_window: str = "1h"
    alert_baseline_window: str = "7d"
    alert_min_sample: int = 30
    alert_alpha: float = 0.0003
    alert_drop_z: float = 3.5
    alert_for: str = "15m"
    alert_min_baseline: int = 200
    alert_min_delta_nps: float = 10.0
    alert_min_delta_csat: float = 5.0
    alert_min_delta_ces: float = 0.3
    alert_slo_first_response_s: float = 3600.0
    alert_cooldown: str = "1h"
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for window in self.windows:
            parse_duration(window)
        if not self.windows:
            raise ValueError("at least one window is required")
        allowed = set(DEFAULT_DIMENSIONS)
        for dim in self.dimensions:
            parts = dim.split("+")
            if any(p not in allowed for p in parts) or (len(parts) > 1 and "all" in parts):
                raise ValueError(f"unknown dimension {dim!r}")
        if self.min_sample < 1:
            raise ValueError("min_sample must be >= 1")
        parse_duration(self.alert_cooldown)
        for rule in self.alert_rules:
            if rule not in _RULES:
                raise ValueError(f"unknown alert rule {rule!r} (known: {', '.join(_RULES)})")

    @property
    def alerts_enabled(self) -> bool:
        """Rules run only when both of their windows are computed."""
        return bool(self.alert_rules) and {
            self.alert_short_window,
            self.alert_baseline_window,
        } <= set(self.windows)

    @property
    def bootstrap(self) -> str:
        """``host:port`` list for aiokafka, from ``kafka://host:port[;kafka://...]``."""
        hosts = []
        for url in self.broker.replace(";", ",").split(","):
            parsed = urlparse(url if "://" in url else f"kafka://{url}")
            hosts.append(f"{parsed.hostname}:{parsed.port or 9092}")
        return ",".join(hosts)

    @property
    def window_seconds(self) -> dict[str, int]:
        return {w: parse_duration(w) for w in self.windows}

    @property
    def retention_s(self) -> int:
        return max(self.window_seconds.values())

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _convert(type_name: str, raw: str) -> object:
    if type_name == "int":
        return int(raw)
    if type_name == "float":
        return float(raw)
    if type_name == "tuple[str, ...]":
        return _csv(raw)
    if type_name == "bool":
        return parse_bool(raw)
    return raw


def from_env(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``CX_*`` variables, then explicit overrides (CLI options) on top."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "extra":
            continue
        raw = env.get(f"CX_{f.name.upper()}")
        if raw is not None and raw != "":
            values[f.name] = _convert(str(f.type), raw)
    for key, value in overrides.items():
        if value is not None:
            values[key] = (
                _csv(value)
                if key in ("windows", "dimensions") and isinstance(value, str)
                else value
            )
    return Settings(**values)  # type: ignore[arg-type]
