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


# --- dedupe bundles (streams/tables.py, SourcePartitionedTable) ---------------------------

T_MIN = 29_833_300  # minutes since 1970: 2026-09-21


def _entry(offset: int, t_min: int = T_MIN) -> int:
    from streams.state import dedupe_value

    return dedupe_value(offset, t_min * 60_000)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_bundles_restore_as_single_entries_and_a_marker(tmp_path: Path, store: str) -> None:
    """A bundle's entries come back one by one (what the fold reads) with the bundle's marker
    (what expiry reads); entries of single messages, written before bundles, still restore,
    and a marker's tombstone removes the marker."""
    settings = Settings(app_id="restore-test", web_port=16997, partitions=4, store=store,
                        data_dir=str(tmp_path / "data"))  # fmt: skip
    table = create_app(settings, CollectorRegistry()).tables["fold-surveys"]
    bundle = {"t": (T_MIN + 1) * 60_000, "e": {"r-1": _entry(10), "r-2": _entry(11, T_MIN + 1)}}
    old = {"t": T_MIN * 60_000, "e": {"r-0": _entry(3)}}
    events = [
        _event("2|d|r-9", _entry(1), 0),  # a single message (before bundles)
        _event("2|D|3", old, 1),
        _event("2|D|10", bundle, 2),
        _event("2|D|3", None, 3),  # expired: the marker goes, its entries were expired too
    ]
    table.apply_changelog_batch(events)
    assert table.data["2|d|r-1"] == _entry(10) and table.data["2|d|r-2"] == _entry(11, T_MIN + 1)
    assert table.data["2|D|10"] == (T_MIN + 1) * 60_000
    assert table.data["2|d|r-9"] == _entry(1)
    assert "2|D|3" not in table.data
    assert table._single_entries == {"2|d|r-9"}
    if store == "rocksdb://":
        _close(table)


def test_new_entries_go_out_as_bundles(tmp_path: Path) -> None:
    """A batch's new entries (BatchResult.dedupe): one by one in the store, one bundle per
    partition (and per BUNDLE_BYTES) in the changelog, a marker per bundle; expired entries
    leave the store with no tombstone, but for those restored from single messages; what the
    changelog holds restores the same store."""
    settings = Settings(app_id="bundle-test", web_port=16998, partitions=4,
                        data_dir=str(tmp_path / "data"))  # fmt: skip
    table = create_app(settings, CollectorRegistry()).tables["fold-surveys"]
    table.BUNDLE_BYTES = 2 * (25 + 3)  # two entries of 3-character ids
    table._single_entries = {"1|d|old"}
    table.data.data.update({"1|d|gone": _entry(1), "1|d|old": _entry(2)})
    new = {
        1: ({f"r-{i}": _entry(100 + i, T_MIN + i) for i in range(3)}, 100, (T_MIN + 2) * 60_000),
        3: ({"s-1": _entry(7)}, 7, T_MIN * 60_000),
    }
    table.write_many({"1|k|nps|all|all|1h|7": [102, [1, 1, 0, 0]], "1|p": [102, 5]})
    table.write_dedupe(new)
    table.drop_dedupe(["1|d|gone", "1|d|old"])
    staged = dict(table._staged)
    assert staged == {
        "1|k|nps|all|all|1h|7": [102, [1, 1, 0, 0]],
        "1|p": [102, 5],
        "1|D|100": {"t": (T_MIN + 1) * 60_000,
                    "e": {"r-0": _entry(100, T_MIN), "r-1": _entry(101, T_MIN + 1)}},
        "1|D|102": {"t": (T_MIN + 2) * 60_000, "e": {"r-2": _entry(102, T_MIN + 2)}},
        "3|D|7": {"t": T_MIN * 60_000, "e": {"s-1": _entry(7)}},
        "1|d|old": None,  # restored from a single message: its tombstone still goes out
    }  # fmt: skip
    store = table.data.data
    for p, (entries, _first, _newest) in new.items():
        assert all(store[f"{p}|d|{i}"] == e for i, e in entries.items())
    assert store["1|D|100"] == (T_MIN + 1) * 60_000 and store["3|D|7"] == T_MIN * 60_000
    assert "1|d|gone" not in store and "1|d|old" not in store
    assert table._single_entries == set()
    fresh = create_app(settings.replace(app_id="bundle-test-2"), CollectorRegistry())
    restored = fresh.tables["fold-surveys"]
    restored.apply_changelog_batch([_event(k, v, i) for i, (k, v) in enumerate(staged.items())])
    assert dict(restored.data.data) == dict(store)
