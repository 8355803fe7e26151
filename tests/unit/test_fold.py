"""Stage 1 and stage 2 without Faust: exactness under replay, partial writes and redelivery."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.agents.merge import alert_config
from streams.aggregate import Merger, table_partition
from streams.alerting import AlertEngine
from streams.events import TOPIC_CUSTOMERS, TOPIC_SURVEYS
from streams.generate import generate
from streams.settings import Settings
from streams.state import (
    DEDUPE_MAX_OFFSET,
    DEDUPE_T_BITS,
    Folder,
    Record,
    dedupe_entry,
    dedupe_value,
)
from streams.tables import _dumps
from streams.windows import window_specs
from tests.folding import apply_writes as _apply

WINDOWS = window_specs({"5m": 300, "1h": 3600, "24h": 86400})
DIMS = ("all", "segment", "channel", "segment+channel")
T0 = 1_790_000_000_000
NOW = T0 + 10 * 86_400_000


def _folder(topic: str, table: dict[str, Any]) -> Folder:
    return Folder(topic, table, WINDOWS, DIMS, retention_ms=86_400_000)


def _records(
    topic: str, n: int, partitions: int = 2, seed: int = 3, customers: int = 50
) -> list[Record]:
    offsets = [0] * partitions
    out = []
    for t, key, value in generate(seed, n, T0, rate_per_s=5.0, customers=customers):
        if t != topic:
            continue
        p = hash(key) % partitions
        out.append(Record(p, offsets[p], value, T0, key))
        offsets[p] += 1
    return out


def _live(table: dict[str, Any], topic: str) -> dict[str, Any]:
    """The state any window can still read: ``table`` without what expiry drops (buckets that
    died within a batch are not written, so which dead ones a table holds depends on where
    its batches ended)."""
    folder = _folder(topic, table)
    dead = set(folder.expired_keys(range(2)))
    return {k: v for k, v in table.items() if k not in dead}


def _run_clean(topic: str, records: list[Record], batch: int) -> tuple[dict[str, Any], list[Any]]:
    table: dict[str, Any] = {}
    folder = _folder(topic, table)
    partials = []
    for i in range(0, len(records), batch):
        out = folder.fold(records[i : i + batch], NOW)
        _apply(table, out.state_writes())
        _apply(table, out.progress)
        partials.extend(out.partials)
    return table, partials


SIZES = {TOPIC_SURVEYS: 1500, TOPIC_CUSTOMERS: 1500, "cx.support-interactions": 1500,
         "cx.cancellations": 40_000}  # fmt: skip


@pytest.mark.parametrize("topic", list(SIZES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crash_mid_batch_then_replay_equals_clean_run(topic: str, seed: int) -> None:
    records = _records(topic, SIZES[topic], customers=1200)
    assert len(records) > 50
    clean, _ = _run_clean(topic, records, batch=37)
    rng = random.Random(seed)
    table: dict[str, Any] = {}
    folder = _folder(topic, table)
    committed = 0  # index into records of the first record not committed
    i = 0
    crashes = 0
    ends = set()  # the offsets batches ended at
    while i < len(records):
        size = rng.randint(1, 12)
        out = folder.fold(records[i : i + size], NOW)
        ends.update(v[0] for v in out.progress.values())
        if rng.random() < 0.25:
            # crash: only a random subset of this batch's changelog writes survived, no seal,
            # and the consumer resumes from an earlier committed position.
            keys = list(out.writes)
            for k in rng.sample(keys, rng.randint(0, len(keys))):
                if out.writes[k] is None:
                    table.pop(k, None)
                else:
                    table[k] = out.writes[k]
            crashes += 1
            i = committed
            folder = _folder(topic, table)  # a new process: nothing in memory
            continue
        _apply(table, out.state_writes())
        _apply(table, out.progress)
        i += size
        if rng.random() < 0.5:
            committed = i
    assert crashes >= 2
    assert _without_markers(_live(table, topic)) == _without_markers(_live(clean, topic))
    for key, value in table.items():  # a bucket's marker: the last offset of a batch
        if "|k|" in key:
            assert value[0] in ends, (key, value)


def _without_markers(table: dict[str, Any]) -> dict[str, Any]:
    """Buckets' counts without their marker: the last offset of the batch that last wrote the
    bucket, so it depends on where batches ended (docs/design.md, state.py)."""
    return {k: v[1] if "|k|" in k else v for k, v in table.items()}


def test_duplicates_count_once_and_replays_are_not_duplicates() -> None:
    records = _records(TOPIC_SURVEYS, 300)
    table: dict[str, Any] = {}
    folder = _folder(TOPIC_SURVEYS, table)
    out = folder.fold(records, NOW)
    _apply(table, out.state_writes())  # no seal: the same offsets come again after a restart
    again = _folder(TOPIC_SURVEYS, table).fold(records, NOW)
    assert again.outcomes["duplicate"] == 0
    assert again.outcomes == out.outcomes
    # the same ids at new offsets are duplicates
    last = {r.partition: r.offset for r in records}
    redelivered = [
        Record(r.partition, last[r.partition] + 1 + i, r.raw, T0, r.key)
        for i, r in enumerate(records)
    ]
    dup = folder.fold(redelivered, NOW)
    assert dup.outcomes["duplicate"] == out.outcomes["applied"] + out.outcomes["late"]


def test_a_record_delivered_twice_within_one_batch_counts_once() -> None:
    """After a rebalance Faust can hand over prefetched records and then, after its seek, the
    same offsets again: both copies may land in one batch. The seal only covers earlier
    batches, so the fold itself must skip an offset it already folded in this batch."""
    records = _records(TOPIC_SURVEYS, 300, partitions=1)
    clean_table: dict[str, Any] = {}
    clean = _folder(TOPIC_SURVEYS, clean_table).fold(records, NOW)
    table: dict[str, Any] = {}
    twice = records[:40] + records[25:]  # offsets 25..39 come again, in order after the seek
    out = _folder(TOPIC_SURVEYS, table).fold(twice, NOW)
    assert out.outcomes == clean.outcomes
    assert sum(out.outcomes.values()) == len(records)
    assert out.writes == clean.writes
    assert out.progress == clean.progress


def _merge(
    partials: list[tuple[str, dict[str, Any]]], order_seed: int | None = None, twice: bool = False
) -> list[Any]:
    table: dict[str, Any] = {}
    merger = Merger(table, WINDOWS, partitions=1, min_sample=5)
    msgs = list(partials) * (2 if twice else 1)
    if order_seed is not None:
        random.Random(order_seed).shuffle(msgs)
    for key, value in msgs:
        merger.apply(key, value, 0)
    merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "x", "wm": NOW - 1000}, 0)
    out = merger.due(NOW, {0}, force=True)
    return sorted((k, r["value"], r["n"], r["window_start"]) for k, r in out.records)


def test_merge_is_idempotent_and_order_free() -> None:
    records = _records(TOPIC_SURVEYS, 800)
    _, partials = _run_clean(TOPIC_SURVEYS, records, batch=50)
    clean = _merge(partials)
    assert len(clean) > 50
    assert _merge(partials, twice=True) == clean
    assert _merge(partials, order_seed=5) == clean  # older snapshots never overwrite newer


def test_due_takes_new_input_first_and_budgets_the_rest() -> None:
    def build() -> Merger:
        merger = Merger({}, WINDOWS, partitions=1, min_sample=5)
        merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "x", "wm": NOW - 1000}, 0)
        rows = [["5m", WINDOWS[0].bucket(NOW - 2000), 1, [1, 1, 0, 0]]]
        ingest = {"a": NOW - 300, "b": NOW - 900, "c": NOW - 600}  # new input, ingested then
        for member in ("a", "b", "c", "s1", "s2", "s3"):  # s*: due without an ingest time
            value: dict[str, Any] = {"s": "x", "wm": NOW - 1000, "b": rows}
            if member in ingest:
                value["ts"] = ingest[member]
            merger.apply(f"nps|segment|{member}", value, 0)
        return merger

    def members(out: Any) -> list[str]:
        seen: list[str] = []
        for key, _record in out.records:
            m = key.rsplit("=", 1)[1]
            if m not in seen:
                seen.append(m)
        return seen

    merger = build()
    out = merger.due(NOW, {0}, live_since=NOW - 700)  # the merge agent's call after it applied
    assert members(out) == ["c", "a"] and out.processing_s == [0.6, 0.3]
    assert list(merger.dirty) == [("nps", "segment", m) for m in ("b", "s1", "s2", "s3")]

    merger = build()
    out = merger.due(NOW, {0}, budget_s=0.0)
    # every member with new input, oldest input first, and one of the others at least
    assert members(out) == ["b", "c", "a", "s1"]
    assert out.processing_s == [0.9, 0.6, 0.3]
    assert members(merger.due(NOW, {0}, force=True, budget_s=0.0)) == ["s2"]
    assert members(merger.due(NOW, {0}, force=True)) == ["s3"]  # no budget: all that are due
    assert not merger.dirty


def test_backlog_and_slid_members_are_evaluated_at_the_backlog_interval() -> None:
    """Live input at the emit interval; input ingested more than ``live_ms`` ago (a replay, a
    backlog) and members due only because a window slid at most every backlog interval."""
    merger = Merger({}, WINDOWS, partitions=1, min_sample=1, emit_interval_ms=100,
                    backlog_interval_ms=1000, live_ms=2000)  # fmt: skip
    merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "x", "wm": NOW - 1000}, 0)
    rows = [["5m", WINDOWS[0].bucket(NOW - 2000), 1, [1, 1, 0, 0]]]

    def feed(t: int, member: str, ingested: int | None) -> None:
        value: dict[str, Any] = {"s": "x", "wm": NOW - 1000, "b": rows}
        if ingested is not None:
            value["ts"] = ingested
        merger.apply(f"nps|segment|{member}", value, 0)

    def evaluated(t: int) -> set[str]:
        before = dict(merger.last_emit)
        merger.due(t, {0})
        return {m[2] for m, at in merger.last_emit.items() if before.get(m) != at}

    for member, ingested in (("live", NOW), ("replay", NOW - 60_000), ("slid", None)):
        feed(NOW, member, ingested)
    assert evaluated(NOW) == {"live", "replay", "slid"}
    for t in (NOW + 200, NOW + 500):  # past the emit interval, within the backlog one
        feed(t, "live", t)
        feed(t, "replay", NOW - 60_000 + t - NOW)
        merger.dirty.setdefault(("nps", "segment", "slid"), None)
        assert evaluated(t) == {"live"}
    assert evaluated(NOW + 1000) == {"replay", "slid"}  # still due, now past the interval
    feed(NOW + 1100, "live", NOW - 2500)  # live input that waited more than live_ms: backlog
    assert evaluated(NOW + 1100) == set() and evaluated(NOW + 1500) == {"live"}


def test_dead_letters_carry_reason_and_original_bytes() -> None:
    table: dict[str, Any] = {}
    recs = [Record(0, 0, b"\xff\xfe", T0), Record(0, 1, orjson.dumps({"survey": "nps"}), T0)]
    out = _folder(TOPIC_SURVEYS, table).fold(recs, NOW)
    assert out.outcomes["dead_letter"] == 2
    first, second = out.dead_letters
    assert first["reason"] == "not_json" and first["raw_encoding"] == "base64"
    assert second["reason"] == "missing_field" and second["raw_encoding"] == "utf-8"
    assert table == {} and out.progress == {"0|p": [1, None]}


def test_customer_tombstone_leaves_the_base() -> None:
    table: dict[str, Any] = {}
    folder = _folder(TOPIC_CUSTOMERS, table)
    rec = {"customer_id": "c1", "status": "active", "segment": "smb"}
    out = folder.fold([Record(0, 0, orjson.dumps(rec), T0, b"c1")], NOW)
    _apply(table, out.state_writes())
    assert table["0|a|segment|smb"][1] == 1
    out = folder.fold([Record(0, 1, None, T0, b"c1")], NOW)
    _apply(table, out.state_writes())
    assert table["0|a|segment|smb"][1] == 0 and table["0|a|all|all"][1] == 0


def _survey(rid: str, t_ms: int) -> bytes:
    return orjson.dumps({"response_id": rid, "customer_id": "c", "survey": "nps", "score": 9,
                         "occurred_at": t_ms, "segment": "smb", "channel": "chat"})  # fmt: skip


def _nps(offset: int, t_ms: int) -> Record:
    return Record(0, offset, _survey(f"r{offset}", t_ms), T0, b"c")


def test_buckets_that_die_within_a_batch_are_published_but_not_stored() -> None:
    # one batch spans 2 h of event time: the 5m buckets of its first hour died before its end
    records = [_nps(i, T0 + i * 60_000) for i in range(121)]
    table: dict[str, Any] = {}
    out = _folder(TOPIC_SURVEYS, table).fold(records, NOW)
    wm = T0 + 120 * 60_000
    written = [k.split("|") for k in out.writes if "|k|" in k]
    published = [row for _, value in out.partials for row in value["b"]]
    for spec in WINDOWS:
        first_live = spec.end_bucket(wm) - 60
        buckets = [int(k[6]) for k in written if k[5] == spec.name]
        assert buckets and min(buckets) >= first_live, spec.name
    # stage 2 gets every bucket the batch touched (its alert steps may still read them)
    five = [b for w, b, _, _ in published if w == "5m"]
    assert min(five) < WINDOWS[0].end_bucket(wm) - 60
    assert len({(w, b) for w, b, _, _ in published}) > len({(k[5], k[6]) for k in written})
    # the 5m buckets of the last 5 minutes are there, with every event of them
    five = [k for k in out.writes if "|5m|" in k and k.startswith("0|k|nps|all|all|")]
    assert sum(out.writes[k][1][0] for k in five) == 5


def test_merge_skips_buckets_dead_on_arrival() -> None:
    table: dict[str, Any] = {}
    merger = Merger(table, WINDOWS, partitions=1, min_sample=5)
    merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "s:0", "wm": T0 + 3_600_000}, 0)
    spec = WINDOWS[0]  # 5m: 5 s buckets
    old, live = spec.bucket(T0), spec.bucket(T0 + 3_599_000)
    rows = [["5m", old, 1, [1, 1, 0, 0]], ["5m", live, 2, [1, 1, 0, 0]]]
    merger.apply("nps|all|all", {"s": "s:1", "wm": T0, "b": rows}, 0)
    assert f"nps|all|all|5m|{live}" in table
    assert f"nps|all|all|5m|{old}" not in table
    merger.drop(f"nps|all|all|5m|{live}")
    assert not any("|5m|" in k for k in table)


def test_batches_delete_the_buckets_their_watermark_left_dead() -> None:
    table: dict[str, Any] = {}
    folder = _folder(TOPIC_SURVEYS, table)
    day = 86_400_000
    old, new = T0, T0 + 2 * day  # the retention is one day
    out = folder.fold([Record(0, 0, _survey("a", old), T0)], new + 1000)
    _apply(table, out.state_writes())
    _apply(table, out.progress)
    stored = {k for k in table if "|k|" in k}
    assert stored and not folder.expired_keys([0])
    out = folder.fold([Record(0, 1, _survey("b", new), T0)], new + 1000)
    assert {k for k, v in out.writes.items() if v is None} == stored  # all dead at `new`
    _apply(table, out.state_writes())
    _apply(table, out.progress)
    assert not [k for k in folder.expired_keys([0]) if "|k|" in k]  # what a round would find
    assert folder.scheduled == {k for k in table if "|k|" in k}  # each stored bucket, once


def test_a_batch_keeps_a_dead_bucket_it_folded_into() -> None:
    # Were the batch replayed after a crash before its seal, its late event would fold into
    # that bucket again, from the stored counts.
    table: dict[str, Any] = {}
    folder = _folder(TOPIC_SURVEYS, table)
    hour = 3_600_000
    first = [Record(0, 0, _survey("a", T0), T0), Record(0, 1, _survey("b", T0 + 20_000), T0)]
    out = folder.fold(first, T0 + 30_000)
    _apply(table, out.state_writes())
    _apply(table, out.progress)
    kept, deleted = (f"0|k|nps|all|all|5m|{t // 5000}" for t in (T0, T0 + 20_000))
    assert kept in table and deleted in table
    # one batch: a late answer into `kept`'s bucket (live while it is folded), then one an
    # hour later, at which both buckets are dead
    batch = [Record(0, 2, _survey("c", T0), T0), Record(0, 3, _survey("d", T0 + hour), T0)]
    out = folder.fold(batch, T0 + hour)
    assert kept in out.touched and kept not in out.writes  # dead: not stored, not deleted
    assert deleted not in out.touched and out.writes[deleted] is None
    _apply(table, out.state_writes())
    assert kept in table and deleted not in table


@pytest.mark.parametrize("alerts", [False, True])
def test_merge_drops_buckets_as_the_watermark_leaves_them_dead(alerts: bool) -> None:
    engine = None
    if alerts:  # its rules read 5m and 1h: those buckets die by the rules' steps, not here
        settings = Settings(alert_short_window="5m", alert_baseline_window="1h")
        engine = AlertEngine(alert_config(settings))
    table: dict[str, Any] = {}
    merger = Merger(table, WINDOWS, partitions=2, min_sample=5, alerts=engine)
    day = 86_400_000
    rows = [[w.name, w.bucket(T0 + i * 60_000), 1, [1, 1, 0, 0]] for w in WINDOWS for i in range(3)]
    for member in ("all|all", "segment|smb", "segment|ent", "channel|chat"):
        merger.apply(f"nps|{member}", {"s": "s:0", "wm": T0, "b": rows}, 0)
    live = [[w.name, w.bucket(T0 + 2 * day), 2, [1, 0, 0, 1]] for w in WINDOWS]
    merger.apply("nps|all|all", {"s": "s:0", "wm": T0 + 2 * day, "b": live}, 0)
    for src in ("s:0", "s:1"):
        merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": src, "wm": T0 + 2 * day}, 0)
    before = set(table)
    dead = set(merger.expired_keys({0, 1}))  # what a round would drop
    assert any("|24h|" in k for k in dead)
    assert not any(f"|{T0 + 2 * day}" in k for k in dead)
    written = merger.expire_dead_buckets({0})  # this worker owns partition 0 of 2
    eager = before - set(table)
    assert written == {0} and {table_partition(k, 2) for k in eager} == {0}
    mine = {k for k in dead if table_partition(k, 2) == 0}
    if alerts:
        assert eager == {k for k in mine if "|24h|" in k}
        assert mine - eager  # the alert windows' buckets: left to the rounds
    else:
        assert eager == mine
    # left to the rounds: the alert windows', and those of a partition owned by another worker
    # (which drops them itself; were it to come here in a rebalance, the rounds find them)
    assert set(merger.expired_keys({0, 1})) == dead - eager
    assert merger.expire_dead_buckets({0, 1}) == set()  # each stored bucket is listed once


def test_expired_keys_of_several_partitions_in_one_pass() -> None:
    table: dict[str, Any] = {}
    folder = _folder(TOPIC_SURVEYS, table)
    day = 86_400_000
    old, new = T0, T0 + 2 * day  # the retention is one day: `old` expires once `new` is in
    records = [Record(p, o, _survey(f"{p}-{o}", t), T0) for p in (0, 1, 2)
               for o, t in enumerate((old, new if p < 2 else old + 1000))]  # fmt: skip
    for o in (0, 1):  # one batch per offset: a bucket that dies within a batch is not written
        if o == 1:  # a restarted worker: no heap lists the stored buckets, the rounds find them
            folder = _folder(TOPIC_SURVEYS, table)
        out = folder.fold([r for r in records if r.offset == o], new + 1000)
        _apply(table, out.state_writes())
        _apply(table, out.progress)
    dead = folder.expired_keys([0, 1])
    assert sorted(dead) == sorted(folder.expired_keys([0]) + folder.expired_keys([1]))
    for p in (0, 1):  # partition 2 was not asked for (and its watermark is still `old`)
        assert f"{p}|d|{p}-0" in dead and f"{p}|d|{p}-1" not in dead
        assert f"{p}|k|nps|all|all|24h|{old // 1_440_000}" in dead
        assert f"{p}|k|nps|all|all|24h|{new // 1_440_000}" not in dead
        assert f"{p}|k|nps|all|all|24h|{old // 1_440_000}" in table
    assert not [k for k in dead if k.startswith("2|")]
    assert folder.expired_keys([2]) == [] and folder.expired_keys([]) == []
    # a bundle's marker (streams/tables.py): dead once its newest event time is
    table["0|D|5"], table["0|D|9"] = old + 5, new
    assert "0|D|5" in folder.expired_keys([0]) and "0|D|9" not in folder.expired_keys([0])
    del table["0|D|5"], table["0|D|9"]
    keys = list(table)  # in chunks (the agent's ExpiryScan): the same keys
    chunks = [folder.expired_keys([0, 1], keys[i : i + 7]) for i in range(0, len(keys), 7)]
    assert sorted(k for chunk in chunks for k in chunk) == sorted(dead)
    gone = next(k for k in dead if "|d|" in k)
    table.pop(gone)  # a chunk's key gone since the snapshot (read for its value: skipped)
    assert folder.expired_keys([0, 1], keys) == [k for k in dead if k != gone]


def test_merge_keeps_what_the_next_alert_step_reads() -> None:
    from streams.alerting import AlertConfig, AlertEngine

    windows = window_specs({"5m": 300, "1h": 3600, "7d": 7 * 86400})
    table: dict[str, Any] = {}
    merger = Merger(table, windows, partitions=1, min_sample=5, alerts=AlertEngine(AlertConfig()))
    # two partitions 3 h apart; the member's rules were last evaluated at the lagging one
    lagging, ahead = T0, T0 + 3 * 3_600_000
    merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "s:0", "wm": lagging}, 0)
    merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "s:1", "wm": ahead}, 0)
    table["nps|all|all|#e"] = {"_step": lagging // 300_000 * 300_000}
    hour, five = windows[1], windows[0]
    rows = [["1h", hour.bucket(lagging - 60_000), 1, [1, 1, 0, 0]],  # the next step's short window
            ["5m", five.bucket(lagging - 60_000), 1, [1, 1, 0, 0]]]  # fmt: skip
    merger.apply("nps|all|all", {"s": "s:0", "wm": lagging, "b": rows}, 0)
    assert f"nps|all|all|1h|{hour.bucket(lagging - 60_000)}" in table  # dead at `ahead`, kept
    assert f"nps|all|all|5m|{five.bucket(lagging - 60_000)}" not in table  # no rule reads 5m
    assert merger.expired_keys({0}) == []
    # once the rules moved past it, the bucket expires
    later = lagging + 10 * 3_600_000
    merger.apply("#wm", {"wm_topic": TOPIC_SURVEYS, "s": "s:0", "wm": later}, 0)
    table["nps|all|all|#e"] = {"_step": later // 300_000 * 300_000}
    assert merger.expired_keys({0}) == [f"nps|all|all|1h|{hour.bucket(lagging - 60_000)}"]


def test_dedupe_entries_are_packed_and_the_list_form_is_still_read() -> None:
    table: dict[str, Any] = {}
    folder = _folder(TOPIC_SURVEYS, table)
    out = folder.fold([Record(0, 5, _survey("r-new", T0), T0)], NOW)
    assert out.state_writes()["0|d|r-new"] == ~(
        5 << 28 | T0 // 60_000 + 1
    )  # T0: not a whole minute
    assert dedupe_entry(out.state_writes()["0|d|r-new"]) == (5, (T0 // 60_000 + 1) * 60_000)
    assert out.dedupe == {
        0: ({"r-new": ~(5 << 28 | T0 // 60_000 + 1)}, 5, (T0 // 60_000 + 1) * 60_000)
    }
    _apply(table, out.state_writes())
    _apply(table, out.progress)
    # An entry written before the packing (list form, restored from an older changelog).
    table["0|d|r-old"] = [3, T0 - 1000]
    again = [
        Record(0, 6, _survey("r-new", T0), T0),  # same id, other offset: a duplicate
        Record(0, 7, _survey("r-old", T0), T0),  # duplicate of the list-form entry
        Record(0, 8, _survey("r-3rd", T0), T0),
    ]
    out = folder.fold(again, NOW)
    assert out.outcomes == {"duplicate": 2, "applied": 1}
    assert "0|d|r-old" not in out.state_writes() and "0|d|r-new" not in out.state_writes()
    _apply(table, out.state_writes())
    # A redelivery of the first occurrence's own offset is a replay, not a duplicate, in both
    # forms: the fold skips it before the lookup only when it is at or below the seal, so
    # clear the seal to reach the dedupe check.
    table.pop("0|p")
    out = folder.fold(
        [Record(0, 3, _survey("r-old", T0), T0), Record(0, 5, _survey("r-new", T0), T0)], NOW
    )
    assert out.outcomes == {"applied": 2}
    # Expiry reads both forms.
    table["0|p"] = [9, T0 + 2 * 86_400_000]
    assert {"0|d|r-old", "0|d|r-new", "0|d|r-3rd"} <= set(folder.expired_keys([0]))
    table["0|p"] = [9, T0 + 86_400_000 - 500]
    dead = set(folder.expired_keys([0]))
    assert "0|d|r-old" in dead and "0|d|r-new" not in dead


def test_dedupe_value_outside_the_packed_range_keeps_the_list_form() -> None:
    assert dedupe_value(7, -1) == [7, -1]
    last_minute = ((1 << 28) - 1) * 60_000  # in 2480
    after_2480 = last_minute + 1  # rounds up past the 28 bits
    assert dedupe_value(7, after_2480) == [7, after_2480]
    assert dedupe_value(DEDUPE_MAX_OFFSET + 1, T0) == [DEDUPE_MAX_OFFSET + 1, T0]
    top = dedupe_value(DEDUPE_MAX_OFFSET, last_minute)
    assert type(top) is int and dedupe_entry(top) == (DEDUPE_MAX_OFFSET, last_minute)
    assert -(2**63) <= top < 0
    # the first packing (2026-12-02 to 12-04), restored from an older changelog, is still read
    assert dedupe_entry(5 << DEDUPE_T_BITS | T0) == (5, T0)


@given(
    offset=st.one_of(st.integers(0, 2**63 - 1), st.sampled_from([2**20 - 1, 2**20, 2**35])),
    t_ms=st.integers(-(2**40), 2**50),
)
def test_dedupe_values_go_through_the_changelog_codec(offset: int, t_ms: int) -> None:
    """Every dedupe value is JSON orjson can write (integers within 64 bits: the first packing
    was not from input offset 2**20 on) and reads back as its offset and a time at most a
    minute later, never earlier (expiry may keep an entry longer, never drop it sooner)."""
    value = dedupe_value(offset, t_ms)
    back = orjson.loads(_dumps(value))
    assert back == value
    first, t_back = dedupe_entry(back)
    assert first == offset
    assert t_ms <= t_back < t_ms + 60_000


def test_dedupe_at_offsets_past_2_to_the_20() -> None:
    """A partition's records past offset 1,048,576: the batch's writes serialise, and the
    dedupe entries tell duplicates from replays as below it."""
    table: dict[str, Any] = {}
    folder = _folder(TOPIC_SURVEYS, table)
    base = 2**20 - 2
    first = [Record(0, base + i, _survey(f"r-{i}", T0 + i), T0) for i in range(4)]
    out = folder.fold(first, NOW)
    assert out.outcomes == {"applied": 4}
    for key, value in out.state_writes().items():
        _dumps(key), _dumps(value)  # raised TypeError('Integer exceeds 64-bit range') before
    entries, lowest, newest = out.dedupe[0]
    _dumps({"t": newest, "e": entries})  # the bundle (streams/tables.py)
    assert lowest == base and dedupe_entry(out.state_writes()["0|d|r-3"])[0] == base + 3
    _apply(table, out.state_writes())
    _apply(table, out.progress)
    again = [Record(0, base + 10, _survey("r-2", T0 + 2), T0),  # a duplicate
             Record(0, base + 11, _survey("r-9", T0), T0)]  # fmt: skip
    out = folder.fold(again, NOW)
    assert out.outcomes == {"duplicate": 1, "applied": 1}
    table.pop("0|p")  # a redelivery of r-3's own offset above the seal: a replay
    out = folder.fold([Record(0, base + 3, _survey("r-3", T0 + 3), T0)], NOW)
    assert out.outcomes == {"applied": 1}


@given(st.lists(st.text(alphabet="ab+_x", min_size=1, max_size=6), min_size=3, max_size=3),
       st.sampled_from(["", "|5m|12", "|#a", "|#r", "|#e", "|1h|-3"]), st.integers(1, 12))  # fmt: skip
def test_table_partition_is_the_member_key_s_crc(
    parts: list[str], suffix: str, partitions: int
) -> None:
    """Stage-2 keys go to the partition of their ``family|dim|member`` (cached per member)."""
    import zlib

    member_key = "|".join(parts)
    want = zlib.crc32(member_key.encode()) % partitions
    assert table_partition(member_key + suffix, partitions) == want
    assert table_partition(member_key + suffix, partitions) == want  # from the cache
    assert table_partition(f"#wm|{partitions - 1}", partitions) == partitions - 1
    with pytest.raises(ValueError):
        table_partition(parts[0], partitions)
