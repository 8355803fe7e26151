"""Property: whatever bytes arrive, stage 1 dead-letters exactly the malformed records (with a
reason, the original bytes and their offset) and counts every valid one. No broker, no Faust:
:class:`streams.state.Folder` over a dict, batches cut at hypothesis-chosen points."""

from __future__ import annotations

import base64
import random
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.state import Folder, Record
from streams.windows import window_specs
from tests import fuzzgen

NOW = 1_795_341_600_000
WINDOWS = window_specs({"5m": 300, "1h": 3600, "24h": 86400})
DIMS = ("all", "segment", "channel", "segment+channel")
REASONS = {"empty", "too_large", "not_json", "not_object", "missing_field", "wrong_type",
           "bad_value", "bad_time", "unknown_survey", "score_out_of_scale", "future"}  # fmt: skip

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def _hypothesis_item(draw: st.DrawFn, topic: str) -> fuzzgen.Item:
    """Malformed by construction from hypothesis' own strategies."""
    kind = draw(st.sampled_from(["binary", "json", "object"]))
    if kind == "binary":
        return fuzzgen.Item(topic, b"k", draw(st.binary(max_size=300)), False, "st.binary")
    if kind == "json":
        value = draw(_json.filter(lambda v: not isinstance(v, dict)))
        return fuzzgen.Item(topic, b"k", orjson.dumps(value), False, "st.json")
    obj = draw(st.dictionaries(st.text(max_size=12), _json, max_size=6))
    obj.pop("customer_id", None)  # required on every topic: never a valid event
    return fuzzgen.Item(topic, b"k", orjson.dumps(obj), False, "st.object")


@st.composite
def _batches(draw: st.DrawFn) -> tuple[str, list[fuzzgen.Item], list[int]]:
    topic = draw(st.sampled_from(fuzzgen.TOPICS))
    rng = draw(st.randoms(use_true_random=False))
    n = draw(st.integers(1, 60))
    share = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    items = [
        fuzzgen.item(rng, topic, NOW, f"h-{i}", malformed=rng.random() < share, big=False)
        for i in range(n)
    ]
    extra = draw(st.lists(_hypothesis_item(topic), max_size=10))
    for it in extra:  # interleave at hypothesis-chosen places
        items.insert(draw(st.integers(0, len(items))), it)
    cuts = sorted(draw(st.lists(st.integers(0, len(items)), max_size=4)))
    return topic, items, cuts


def _raw(dl: dict[str, Any]) -> bytes:
    if dl["raw_encoding"] == "base64":
        return base64.b64decode(dl["raw"])
    return str(dl["raw"]).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches())
def test_every_malformed_record_is_dead_lettered_and_every_valid_one_counted(
    case: tuple[str, list[fuzzgen.Item], list[int]],
) -> None:
    topic, items, cuts = case
    table: dict[str, Any] = {}
    folder = Folder(topic, table, WINDOWS, DIMS, retention_ms=86_400_000)
    records = [Record(i % 2, i // 2, it.value, NOW, it.key) for i, it in enumerate(items)]
    outcomes: dict[str, int] = {}
    dead: list[dict[str, Any]] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(records)], strict=True):
        result = folder.fold(records[lo:hi], NOW)
        for key, value in result.state_writes().items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        table.update(result.progress)
        for outcome, count in result.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
        dead += result.dead_letters
    bad = {
        (r.partition, r.offset): it for r, it in zip(records, items, strict=True) if not it.valid
    }
    got = {(d["partition"], d["offset"]): d for d in dead}
    assert set(got) == set(bad), [(it.kind, it.value and it.value[:80]) for k, it in bad.items()
                                  if k not in got]  # fmt: skip
    for key, d in got.items():
        assert d["topic"] == topic and d["reason"] in REASONS and d["detail"], d
        assert _raw(d) == (bad[key].value or b""), bad[key].kind
    valid = sum(it.valid for it in items)
    assert outcomes.get("dead_letter", 0) == len(bad)
    assert outcomes.get("applied", 0) + outcomes.get("late", 0) == valid
    assert outcomes.get("duplicate", 0) == 0


def test_the_generator_covers_every_kind() -> None:
    kinds = {it.kind.split(":")[0] for it in fuzzgen.items(random.Random(1), 3000, NOW)}
    assert {"wrong_type", "missing", "empty", "bad_time", "nan", "invalid_utf8", "deep",
            "too_large", "not_object", "not_json", "binary", "bad_value", "tombstone",
            "customer_tombstone", "unknown_field", "large_ok", "null_optional",
            "plain"} <= kinds  # fmt: skip
