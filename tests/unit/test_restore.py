"""Changelog restore keeps the newest value by offset marker, not the last one written
(streams.tables.newest_by_marker): a zombie's late write cannot roll a key back."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.app import create_app
from streams.settings import Settings
from streams.tables import newest_by_marker
from tests.unit.test_stores import _close


def _event(key: str, value: Any, offset: int) -> Any:
    raw = None if value is None else orjson.dumps(value)
    partition = int(key.split("|", 1)[0])
    tp = TP("restore-test-fold-surveys-changelog", partition)
    message = SimpleNamespace(key=orjson.dumps(key), value=raw, partition=partition,
                              offset=offset, tp=tp)  # fmt: skip
    return SimpleNamespace(key=key, value=value, message=message)


# What the changelog of partition 1 holds after a rebalance with a zombie: the new owner wrote
# the bucket at marker 120 and sealed 120; the old owner's batch (marker 100) landed after.
CHANGELOG = [
    ("1|k|nps|all|all|1h|7", [90, [10, 5, 3, 2]]),
    ("1|k|nps|all|all|1h|7", [120, [14, 7, 4, 3]]),  # new owner
    ("1|p", [120, 1_790_000_000_000]),
    ("1|k|nps|all|all|1h|7", [100, [12, 6, 4, 2]]),  # zombie, late
    ("1|p", [100, 1_789_999_000_000]),  # zombie's seal, late
    ("1|d|r-1", [95, 1_789_998_000_000]),
    ("1|d|r-1", [95, 1_789_998_000_000]),  # the same entry again: kept
    ("1|k|csat|all|all|1h|7", [80, [3, 1]]),
    ("1|k|csat|all|all|1h|7", None),  # expired: the tombstone applies
    ("1|m", {"segment": ["smb"]}),
    ("1|m", {"segment": ["enterprise", "smb"]}),  # no marker: last write wins
    ("1|d|r-2", 96 << 44 | 1_789_998_001_000),  # a packed dedupe entry (streams/state.py)
    ("1|d|r-2", 96 << 44 | 1_789_998_001_000),  # written once; a replay writes the same
]
WANT = {
    "1|k|nps|all|all|1h|7": [120, [14, 7, 4, 3]],
    "1|p": [120, 1_790_000_000_000],
    "1|d|r-1": [95, 1_789_998_000_000],
    "1|m": {"segment": ["enterprise", "smb"]},
    "1|d|r-2": 96 << 44 | 1_789_998_001_000,
}


def test_stale_values_are_skipped_within_a_batch_and_against_restored_state() -> None:
    events = [_event(k, v, i) for i, (k, v) in enumerate(CHANGELOG)]
    kept = list(newest_by_marker(events, {}))
    assert [e.message.offset for e in kept] == [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12]
    # across batches: the state restored so far counts as the current value
    current = {"1|k|nps|all|all|1h|7": [120, [14, 7, 4, 3]]}
    late = [_event("1|k|nps|all|all|1h|7", [100, [12, 6, 4, 2]], 11)]
    assert list(newest_by_marker(late, current)) == []
    newer = [_event("1|k|nps|all|all|1h|7", [130, [15, 7, 4, 4]], 12)]
    assert list(newest_by_marker(newer, current)) == newer


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_fold_table_restore_keeps_the_newest_value(tmp_path: Path, store: str) -> None:
    settings = Settings(app_id="restore-test", web_port=16997, partitions=4, store=store,
                        data_dir=str(tmp_path / "data"))  # fmt: skip
    table = create_app(settings, CollectorRegistry()).tables["fold-surveys"]
    events = [_event(k, v, i) for i, (k, v) in enumerate(CHANGELOG)]
    table.apply_changelog_batch(events[:4])  # split: the second batch sees restored state
    table.apply_changelog_batch(events[4:])
    assert {k: table.data[k] for k in WANT} == WANT
    assert "1|k|csat|all|all|1h|7" not in table.data
    if store == "rocksdb://":
        _close(table)
