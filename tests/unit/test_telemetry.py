"""The score gauges: set_score caches its children, so check what the registry exposes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streams.telemetry import Telemetry

LABELS = ("nps", "1h", "segment", "smb")
NAMES = ("cx_score", "cx_score_samples", "cx_score_ci95_low", "cx_score_ci95_high")


def _label_names(tel: Telemetry) -> dict[str, str]:
    return dict(zip(tel.score._labelnames, LABELS, strict=True))


def test_score_series_appear_change_vanish_and_come_back() -> None:
    registry = CollectorRegistry()
    tel = Telemetry.create(registry)

    def exposed() -> dict[str, float | None]:
        labels = _label_names(tel)
        return {name: registry.get_sample_value(name, labels) for name in NAMES}

    tel.set_score(LABELS, None, 3, None, None)
    assert exposed() == {
        "cx_score": None,
        "cx_score_samples": 3,
        "cx_score_ci95_low": None,
        "cx_score_ci95_high": None,
    }
    tel.set_score(LABELS, 40.0, 50, 30.0, 50.0)
    assert exposed() == {
        "cx_score": 40.0,
        "cx_score_samples": 50,
        "cx_score_ci95_low": 30.0,
        "cx_score_ci95_high": 50.0,
    }
    tel.set_score(LABELS, 42.0, 51, None, 52.0)
    assert exposed() == {
        "cx_score": 42.0,
        "cx_score_samples": 51,
        "cx_score_ci95_low": None,
        "cx_score_ci95_high": 52.0,
    }
    tel.drop_score(LABELS)
    assert exposed() == dict.fromkeys(NAMES)
    tel.set_score(LABELS, 10.0, 60, 5.0, 15.0)  # after a drop: new children, all exposed
    assert exposed() == {
        "cx_score": 10.0,
        "cx_score_samples": 60,
        "cx_score_ci95_low": 5.0,
        "cx_score_ci95_high": 15.0,
    }
