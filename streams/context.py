"""What every agent of one app shares: the app, settings, telemetry and window specs."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.settings import Settings
from streams.supervision import CrashPolicy
from streams.telemetry import Telemetry
from streams.windows import WindowSpec


@dataclass(frozen=True)
class Context:
    app: faust.App
    settings: Settings
    telemetry: Telemetry
    windows: tuple[WindowSpec, ...]
    crashes: CrashPolicy  # every agent's on_error

    @property
    def partials_topic(self) -> str:
        return f"{self.settings.app_id}-partials"
