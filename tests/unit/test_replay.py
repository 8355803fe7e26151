"""``cxpulse replay``: the mapping features on small fixtures, and the four real datasets mapped
in full, every event valid per the decoder, counts and times checked against the raw files.

The scores of each dataset over its whole history (``docs/datasets.md``) are computed here from
the mapped events with plain arithmetic and pinned, so the doc cannot drift from the code.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import gzip
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams import replay, topics
from streams.events import MAX_TIME_MS, Cancellation, Customer, Rejection, Support, Survey, decode
from streams.mappings import BUILTIN, Mapping, MappingError, ReplayStats, load_mapping
from streams.mappings.kinds import minus_months
from streams.replay import Progress, rows_to_events

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
FAR = MAX_TIME_MS  # "now" for decode: no event is in the future

needs_datasets = pytest.mark.skipif(
    not DATASETS.is_dir(), reason=f"datasets not found at {DATASETS}"
)


def utc_ms(*parts: int) -> int:
    """Epoch ms of a UTC wall time, independently of the code under test."""
    return calendar.timegm((*parts, *(0,) * (6 - len(parts)))) * 1000


def raw_rows(name: str) -> list[dict[str, str]]:
    with gzip.open(DATASETS / name, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


Mapped = list[tuple[str, bytes, Any]]  # topic, key, decoded event


def mapped(name: str, **kwargs: Any) -> tuple[Mapped, ReplayStats]:
    stats = ReplayStats()
    out: Mapped = []
    for topic, key, value in rows_to_events(load_mapping(name), stats=stats, **kwargs):
        event = decode(topic, value, FAR)
        assert not isinstance(event, Rejection), (topic, value, event)
        out.append((topic, key, event))
    return out, stats


def _of(events: Mapped, topic: str) -> list[Any]:
    return [e for t, _k, e in events if t == topic]


def _keys_are_customers(events: Mapped) -> None:
    for _topic, key, event in events:
        assert key == event.customer_id.encode()


# --- generic mapping features on small fixtures ----------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


SURVEY_CSV = """\
id;when;rating;plan;tier;note
1;02/01/2026 10:00;9;Gold;x;great
2;01/01/2026 23:30;?;Gold;x;blank rating
3;03/01/2026 08:15;12;silver;y;above the clamp
4;03/01/2026 08:16;seven;Gold;y;not a number
5;04/01/2026 09:00;1;bronze;?;
6;05/01/2026 09:00;7;TEST;y;test account
"""

SURVEY_TOML = """\
name = "fixture"
[source]
format = "csv"
delimiter = ";"
null_values = ["?"]
order = "{order}"

[[skip]]
reason = "blank_rating"
column = "rating"
blank = true

[[skip]]
reason = "test_account"
column = "plan"
in = ["TEST", "QA"]

[[targets]]
topic = "cx.survey-responses"
[targets.fields]
response_id = {{ template = "r-{{id}}-{{_row}}" }}
customer_id = {{ template = "c-{{id}}" }}
survey = "nps"
score = {{ column = "rating", type = "int", clamp = [0, 10] }}
occurred_at = {{ column = "when", time = "%d/%m/%Y %H:%M", tz = "+02:00" }}
plan = {{ column = "plan", map = {{ Gold = "gold", silver = "silver" }}, map_default = "other" }}
segment = {{ column = "tier", default = "none" }}
comment = {{ column = "note" }}
"""


def fixture_mapping(tmp_path: Path, order: str = "time") -> Mapping:
    path = tmp_path / f"fixture-{order}.toml"
    path.write_text(SURVEY_TOML.format(order=order))
    return load_mapping(path)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_generic_csv_mapping(tmp_path: Path, suffix: str) -> None:
    data = write(tmp_path, f"surveys{suffix}", SURVEY_CSV)
    stats = ReplayStats()
    out = list(rows_to_events(fixture_mapping(tmp_path), data, stats=stats))
    assert stats.rows == 6
    assert stats.skipped == Counter(blank_rating=1, test_account=1, bad_score=1)
    values = [orjson.loads(v) for _t, _k, v in out]
    # ordered by event time, not by file order
    assert [v["response_id"] for v in values] == ["r-1-1", "r-3-3", "r-5-5"]
    assert [k for _t, k, _v in out] == [b"c-1", b"c-3", b"c-5"]
    first, clamped, last = values
    assert first["occurred_at"] == "2026-01-02T10:00:00+02:00"  # the zone is kept as given
    assert decode(topics.SURVEY_RESPONSES, out[0][2], FAR).t_ms == utc_ms(2026, 1, 2, 8)  # type: ignore[union-attr]
    assert clamped["score"] == 10 and clamped["plan"] == "silver"
    assert first["plan"] == "gold" and last["plan"] == "other"  # map_default
    assert last["segment"] == "none"  # `?` is null, then the default
    assert "comment" not in last  # empty cell = absent field
    assert stats.events == 3 and stats.topics == Counter({topics.SURVEY_RESPONSES: 3})


def test_file_order_limit_and_shift(tmp_path: Path) -> None:
    data = write(tmp_path, "surveys.csv", SURVEY_CSV)
    mapping = fixture_mapping(tmp_path, order="file")
    ids = [orjson.loads(v)["response_id"] for _t, _k, v in rows_to_events(mapping, data)]
    assert ids == ["r-1-1", "r-3-3", "r-5-5"]
    assert len(list(rows_to_events(mapping, data, limit=2))) == 2
    stats = ReplayStats()
    until = utc_ms(2026, 1, 3, 6, 16)  # row 3 (08:15+02:00) is before it, row 5 not
    cut = list(rows_to_events(mapping, data, until_ms=until, stats=stats))
    assert [orjson.loads(v)["response_id"] for _t, _k, v in cut] == ["r-1-1", "r-3-3"]
    assert stats.notes == Counter(after_until=1)
    day = 86_400_000
    shifted = list(rows_to_events(mapping, data, time_shift=day))
    t = decode(topics.SURVEY_RESPONSES, shifted[0][2], FAR)
    assert isinstance(t, Survey) and t.t_ms == utc_ms(2026, 1, 3, 8)
    before = replay.now_ms()
    latest = max(
        decode(topics.SURVEY_RESPONSES, v, FAR).t_ms  # type: ignore[union-attr]
        for _t, _k, v in rows_to_events(mapping, data, time_shift="now")
    )
    assert before <= latest <= replay.now_ms()


def test_jsonl_when_coalesce_and_validation(tmp_path: Path) -> None:
    toml = tmp_path / "tickets.toml"
    toml.write_text(
        """
name = "tickets"
[source]
format = "jsonl"
[[targets]]
topic = "cx.cancellations"
when = { column = "kind", equals = "cancel" }
[targets.fields]
cancellation_id = { column = "id", type = "str" }
customer_id = { coalesce = ["account", "user"] }
occurred_at = { column = "ts", time = "epoch_s" }
mrr = { column = "mrr", type = "float", round = 1 }
reason = { column = "why", map = { p = "price" }, map_strict = true }
[[targets]]
topic = "cx.survey-responses"
when = { column = "kind", equals = "cancel", not = true }
[targets.fields]
response_id = { column = "id", type = "str" }
customer_id = { coalesce = ["account", "user"] }
survey = { column = "kind" }
score = { column = "score" }
occurred_at = { column = "ts", time = "epoch_s" }
"""
    )
    lines = [
        {"id": 1, "kind": "cancel", "account": "a1", "ts": 1_700_000_000, "mrr": 9.96, "why": "p"},
        {"id": 2, "kind": "cancel", "user": "u2", "ts": 1_700_000_001, "why": "?"},
        {"id": 3, "kind": "nps", "account": None, "user": "u3", "ts": 1_700_000_002, "score": 9},
        {"id": 4, "kind": "nps", "user": "u4", "ts": 1_700_000_003, "score": 11},
        {"id": 5, "kind": "nps", "ts": 1_700_000_004, "score": 3},
    ]
    text = "\n".join(orjson.dumps(x).decode() for x in lines) + "\nnot json\n[1]\n\n"
    data = write(tmp_path, "tickets.jsonl.gz", text)
    stats = ReplayStats()
    out = list(rows_to_events(load_mapping(toml), data, stats=stats))
    assert stats.rows == 7
    assert stats.skipped == Counter(
        bad_json=1, not_object=1, unmapped_reason=1, missing_customer_id=1,
        invalid_score_out_of_scale=1,  # caught by the decoder check, not produced
    )  # fmt: skip
    assert [(t, k) for t, k, _v in out] == [
        (topics.CANCELLATIONS, b"a1"),
        (topics.SURVEY_RESPONSES, b"u3"),
    ]
    cancel = orjson.loads(out[0][2])
    assert cancel == {"cancellation_id": "1", "customer_id": "a1", "occurred_at":
                      "2023-11-14T22:13:20Z", "mrr": 10.0, "reason": "price"}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[targets]]\ntopic = "cx.nope"', "topic must be one of"),
        (
            '[[targets]]\ntopic = "cx.cancellations"\n[targets.fields]\ncustomer_id = "x"',
            "needs the field(s)",
        ),
        (
            '[[targets]]\ntopic = "cx.customers"\n[targets.fields]\ncustomer_id = "x"\n'
            'status = "active"\nsegmnet = "y"',
            "unknown key(s) ['segmnet']",
        ),
        (
            '[[targets]]\ntopic = "cx.customers"\n[targets.fields]\ncustomer_id = "x"\n'
            'status = { column = "s", const = "a" }',
            "exactly one of",
        ),
        (
            '[[targets]]\ntopic = "cx.customers"\n[targets.fields]\ncustomer_id = "x"\n'
            'status = { column = "s", type = "decimal" }',
            "type must be",
        ),
        ('[[skip]]\ncolumn = "a"\nblank = true', "needs a reason"),
        ('[[skip]]\nreason = "r"\ncolumn = "a"\nequals = "1"\nprefix = "2"', "exactly one of"),
        ('kind = "magic"', "kind must be"),
        ('[source]\nformat = "xlsx"', "csv or jsonl"),
        ("name = ", "mapping.toml"),
        ("", "no [[targets]]"),
    ],
)
def test_mapping_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert message in str(info.value)


def test_minus_months_clamps_the_day() -> None:
    t = datetime(2018, 3, 31, 12, tzinfo=UTC)
    assert minus_months(t, 1) == datetime(2018, 2, 28, 12, tzinfo=UTC)
    assert minus_months(t, 13) == datetime(2017, 2, 28, 12, tzinfo=UTC)
    assert minus_months(t, 0) == t
    assert minus_months(datetime(2018, 1, 15, tzinfo=UTC), 72) == datetime(2012, 1, 15, tzinfo=UTC)


def test_progress_line() -> None:
    out = io.StringIO()
    bar = Progress("replay x", 100, stream=out)
    bar.update(50)
    bar.close()
    text = out.getvalue()
    assert "replay x: 50/100 events" in text and "/s" in text and "ETA" in text


def test_builtin_mappings_load_and_record_their_dataset() -> None:
    for name in BUILTIN:
        mapping = load_mapping(name)
        assert mapping.name == name and mapping.dataset is not None
        assert mapping.dataset.startswith("../shared/datasets/")


def test_cli_parser_and_dry_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    replay.add_parser(sub)
    data = write(tmp_path, "surveys.csv", SURVEY_CSV)
    mapping = tmp_path / "fixture-time.toml"
    mapping.write_text(SURVEY_TOML.format(order="time"))
    args = parser.parse_args(
        [
            "replay",
            "--mapping",
            str(mapping),
            "--input",
            str(data),
            "--dry-run",
            "--limit",
            "2",
            "--shift-to-now",
        ]  # fmt: skip
    )
    assert args.fn(None, args) == 0
    out, err = capsys.readouterr()
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and {x["topic"] for x in lines} == {topics.SURVEY_RESPONSES}
    assert lines[0]["key"] == lines[0]["value"]["customer_id"]
    assert "skipped" in err and "blank_rating 1" in err
    args = parser.parse_args(["replay", "--mapping", str(tmp_path / "missing.toml"), "--dry-run"])
    assert args.fn(None, args) == 2


# --- the real datasets -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def olist() -> tuple[Mapped, ReplayStats]:
    return mapped("olist")


@pytest.fixture(scope="module")
def skytrax() -> tuple[Mapped, ReplayStats]:
    return mapped("skytrax")


@pytest.fixture(scope="module")
def telco() -> tuple[Mapped, ReplayStats]:
    return mapped("telco")


@pytest.fixture(scope="module")
def itsm() -> tuple[Mapped, ReplayStats]:
    return mapped("itsm")


@needs_datasets
def test_olist(olist: tuple[Mapped, ReplayStats]) -> None:
    events, stats = olist
    raw = raw_rows("olist_classified_reviews.csv.gz")
    assert stats.rows == len(raw) == 3584
    assert not stats.skipped  # every row has a score 1..5 and an answer time
    assert len(events) == 3584 and {t for t, _k, _e in events} == {topics.SURVEY_RESPONSES}
    _keys_are_customers(events)
    surveys: list[Survey] = [e for _t, _k, e in events]
    assert len({e.event_id for e in surveys}) == 3584
    assert Counter(e.score for e in surveys) == Counter(int(r["review_score"]) for r in raw)
    by_id = {e.event_id: e for e in surveys}
    first = by_id["olist-review-1"]  # 2017-09-10 03:27:54+00:00, beleza_saude, MG, 5
    assert first.t_ms == utc_ms(2017, 9, 10, 3, 27, 54)
    assert (first.survey, first.score, first.scale_min, first.scale_max) == ("csat", 5, 1, 5)
    assert first.dims["region"] == "MG" and first.dims["touchpoint"] == "beleza_saude"
    assert first.comment == "tudo certo"
    third = by_id["olist-review-3"]  # 2018-02-02 17:42:43+00:00, score 1
    assert (third.t_ms, third.score) == (utc_ms(2018, 2, 2, 17, 42, 43), 1)


@needs_datasets
def test_skytrax(skytrax: tuple[Mapped, ReplayStats]) -> None:
    events, stats = skytrax
    raw = raw_rows("skytrax_seat_reviews.csv.gz")
    blank = sum(1 for r in raw if not r["overall_rating"].strip())
    epoch = sum(1 for r in raw if r["date"].startswith("1970-01-01"))
    assert stats.rows == len(raw) == 1258
    assert (
        stats.skipped
        == Counter(blank_rating=blank, epoch_date=epoch)
        == Counter(blank_rating=1, epoch_date=26)
    )
    assert len(events) == 1258 - 1 - 26
    _keys_are_customers(events)
    surveys: list[Survey] = [e for _t, _k, e in events]
    assert all(e.survey == "nps" and 1 <= e.score <= 10 for e in surveys)
    assert len({e.event_id for e in surveys}) == len(surveys)
    by_id = {e.event_id: e for e in surveys}
    first = by_id["skytrax-1"]  # aegean-airlines, United Kingdom, 2015-07-20, Economy, 10.0
    assert (first.score, first.t_ms) == (10, utc_ms(2015, 7, 20))
    assert first.dims == {"channel": "skytrax", "touchpoint": "aegean-airlines",
                          "segment": "Solo Leisure", "region": "United Kingdom",
                          "plan": "Economy"}  # fmt: skip
    third = by_id["skytrax-3"]  # aer-lingus, 2015-07-07, 6.0
    assert (third.score, third.t_ms) == (6, utc_ms(2015, 7, 7))
    assert min(e.t_ms for e in surveys) >= utc_ms(2007, 1, 1)  # no 1970 placeholder left


@needs_datasets
def test_telco(telco: tuple[Mapped, ReplayStats]) -> None:
    events, stats = telco
    raw = raw_rows("telco_customer_churn.csv.gz")
    churned = {r["customerID"] for r in raw if r["Churn"] == "Yes"}
    assert stats.rows == len(raw) == 7043 and not stats.skipped
    _keys_are_customers(events)
    customers: list[Customer] = _of(events, topics.CUSTOMERS)
    cancels: list[Cancellation] = _of(events, topics.CANCELLATIONS)
    assert len(customers) == 7043 and len({c.customer_id for c in customers}) == 7043
    assert len(cancels) == len(churned) == 1869
    assert {c.customer_id for c in cancels} == churned
    assert {c.customer_id for c in customers if c.status == "cancelled"} == churned
    anchor = datetime(2018, 1, 1, tzinfo=UTC)
    anchor_ms = utc_ms(2018, 1, 1)
    # within the 29 days before the anchor (inside a 30d window whatever its 12 h alignment)
    assert all(anchor_ms - 29 * 86_400_000 <= c.t_ms < anchor_ms for c in cancels)
    # spread over those days, not bunched: every day holds some
    assert len({(anchor_ms - c.t_ms) // 86_400_000 for c in cancels}) == 29
    rows = {r["customerID"]: r for r in raw}
    by_id = {c.customer_id: c for c in customers}
    # 5575-GNVDE: stayed, tenure 34, One year, DSL, 56.95 -> started 34 months before anchor
    stayer = by_id["5575-GNVDE"]
    assert stayer.status == "active" and stayer.mrr == 56.95
    assert stayer.started_at_ms == utc_ms(2015, 3, 1)
    assert stayer.dims == {"segment": "One year", "region": "unknown", "plan": "DSL"}
    # 3668-QPYBK: churned, tenure 2, 53.85: started 2 months before its cancellation
    cancel = next(c for c in cancels if c.customer_id == "3668-QPYBK")
    assert cancel.mrr == 53.85 and cancel.dims["channel"] == "Mailed check"
    when = datetime.fromtimestamp(cancel.t_ms / 1000, tz=UTC)
    assert by_id["3668-QPYBK"].started_at_ms == utc_ms(
        when.year if when.month > 2 else when.year - 1, (when.month - 3) % 12 + 1, when.day,
        when.hour, when.minute, when.second,
    )  # fmt: skip
    assert sum(int(rows[c]["tenure"]) == 0 for c in churned) == 0  # no 0-month churner
    # --anchor moves every date with it, and the spread does not depend on other rows
    later = load_mapping("telco").with_kind_options(anchor="2020-01-01T00:00:00Z")
    moved = {
        orjson.loads(v)["customer_id"]: decode(t, v, FAR)
        for t, _k, v in rows_to_events(later, limit=None)
        if t == topics.CANCELLATIONS
    }
    shift = (datetime(2020, 1, 1, tzinfo=UTC) - anchor) // timedelta(milliseconds=1)
    assert moved["3668-QPYBK"].t_ms == cancel.t_ms + shift  # type: ignore[union-attr]


def _itsm_expected() -> dict[str, Any]:
    """Counts straight from the raw log, written independently of the replay kind."""
    opened: dict[str, str] = {}
    resolved: set[str] = set()
    active: dict[str, int] = {}
    reopens: dict[str, int] = defaultdict(int)
    for r in raw_rows("itsm_incident_event_log.csv.gz"):
        n = r["number"]
        opened.setdefault(n, r["opened_at"])
        if r["resolved_at"] != "?":
            resolved.add(n)
        if r["incident_state"] == "Active":
            d, m, rest = r["sys_updated_at"].split("/")
            y, hm = rest.split(" ")
            h, mi = hm.split(":")
            t = utc_ms(int(y), int(m), int(d), int(h), int(mi))
            active[n] = min(active.get(n, t), t)
        reopens[n] = max(reopens[n], int(r["reopen_count"]))
    return {"opened": opened, "resolved": resolved, "active": active,
            "reopened": sum(reopens.values())}  # fmt: skip


@needs_datasets
def test_itsm(itsm: tuple[Mapped, ReplayStats]) -> None:
    events, stats = itsm
    expected = _itsm_expected()
    assert stats.rows == 141_712 and not stats.skipped
    _keys_are_customers(events)
    support: list[Support] = [e for _t, _k, e in events]
    status = Counter(e.status for e in support)
    assert status["opened"] == len(expected["opened"]) == 24_918
    assert status["resolved"] == len(expected["resolved"]) == 24_918 - 1_556
    assert status["responded"] == len(expected["active"]) == 15_013
    assert status["reopened"] == expected["reopened"] == 331
    assert stats.notes == Counter(no_resolved_at=1_556, no_responded_state=24_918 - 15_013)
    assert len({e.event_id for e in support}) == len(support)  # no accidental duplicates
    # ordered by event time
    assert all(a.t_ms <= b.t_ms for a, b in zip(support, support[1:], strict=False))
    # every event of an incident carries its opening time and the same customer and dims
    per: dict[str, list[Support]] = defaultdict(list)
    for e in support:
        per[e.interaction_id].append(e)
    for group in per.values():
        assert len({(e.customer_id, e.opened_at_ms, tuple(e.dims.items())) for e in group}) == 1
    for n, e in ((n, g[0]) for n, g in per.items() if n in expected["active"]):
        responded = next(x for x in per[n] if x.status == "responded")
        assert responded.t_ms == expected["active"][n]
        assert e.opened_at_ms is not None
    # INC0000045: opened 29/2/2016 01:16 (UTC assumed), resolved 29/2/2016 11:29, by phone
    inc = {e.status: e for e in per["INC0000045"]}
    assert inc["opened"].t_ms == inc["opened"].opened_at_ms == utc_ms(2016, 2, 29, 1, 16)
    assert inc["resolved"].t_ms == utc_ms(2016, 2, 29, 11, 29)
    assert inc["opened"].customer_id == "Caller 2403"
    assert inc["opened"].dims == {"channel": "Phone", "segment": "Category 55",
                                  "region": "Location 143", "priority": "3 - Moderate"}  # fmt: skip
    # "?" callers throughout: the incident number stands in
    assert per["INC0005690"][0].customer_id == "INC0005690"


@needs_datasets
def test_shift_to_now_moves_the_newest_event_to_now() -> None:
    before = replay.now_ms()
    events, _stats = mapped("olist", time_shift="now")
    newest = max(e.t_ms for _t, _k, e in events)
    assert before <= newest <= replay.now_ms()
    original, _ = mapped("olist")
    shift = newest - max(e.t_ms for _t, _k, e in original)
    assert sorted(e.t_ms for _t, _k, e in events) == sorted(
        e.t_ms + shift for _t, _k, e in original
    )


# --- scores over the whole history (docs/datasets.md) -------------------------------------


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def survey_scores(surveys: list[Survey]) -> dict[str, float]:
    n = len(surveys)
    if surveys[0].survey == "csat":
        top = sum(1 for e in surveys if e.score >= e.scale_max - 1)
        return {"n": n, "csat": 100 * top / n, "mean": sum(e.score for e in surveys) / n}
    promoters = sum(1 for e in surveys if e.score >= 9) / n
    detractors = sum(1 for e in surveys if e.score <= 6) / n
    nps = 100 * (promoters - detractors)
    se = 100 * math.sqrt((promoters + detractors - (promoters - detractors) ** 2) / n)
    return {"n": n, "nps": nps, "ci95_low": nps - 1.96 * se, "ci95_high": nps + 1.96 * se,
            "promoters": 100 * promoters, "detractors": 100 * detractors}  # fmt: skip


def support_scores(support: list[Support]) -> dict[str, float]:
    status = Counter(e.status for e in support)
    first = [max(0.0, (e.t_ms - e.opened_at_ms) / 1000) for e in support
             if e.status == "responded" and e.opened_at_ms is not None]  # fmt: skip
    resolution = [max(0.0, (e.t_ms - e.opened_at_ms) / 1000) for e in support
                  if e.status == "resolved" and e.opened_at_ms is not None]  # fmt: skip
    return {
        "opened": status["opened"],
        "first_response_p50_s": nearest_rank(first, 0.5),
        "first_response_p90_s": nearest_rank(first, 0.9),
        "resolution_p50_s": nearest_rank(resolution, 0.5),
        "resolution_p90_s": nearest_rank(resolution, 0.9),
        "resolution_rate": status["resolved"] / status["opened"],
        "reopen_rate": status["reopened"] / status["resolved"],
    }


def churn_scores(customers: list[Customer], cancels: list[Cancellation]) -> dict[str, float]:
    segments = Counter(c.dims["segment"] for c in customers)
    lost = Counter(c.dims["segment"] for c in cancels)
    return {
        "customers": len(customers),
        "cancellations": len(cancels),
        "churn_rate": len(cancels) / len(customers),
        "lost_mrr": sum(c.mrr for c in cancels),
        **{f"churn_rate[{s}]": lost[s] / n for s, n in segments.items()},
    }


def _rounded(scores: dict[str, float], digits: int = 2) -> Iterator[tuple[str, float]]:
    return ((k, round(v, digits)) for k, v in scores.items())


@needs_datasets
def test_scores_over_the_whole_history(
    olist: tuple[Mapped, ReplayStats],
    skytrax: tuple[Mapped, ReplayStats],
    telco: tuple[Mapped, ReplayStats],
    itsm: tuple[Mapped, ReplayStats],
) -> None:
    """The numbers quoted in docs/datasets.md."""
    assert dict(_rounded(survey_scores([e for _t, _k, e in olist[0]]))) == {
        "n": 3584, "csat": 60.52, "mean": 3.52,
    }  # fmt: skip
    assert dict(_rounded(survey_scores([e for _t, _k, e in skytrax[0]]))) == {
        "n": 1231, "nps": -57.03, "ci95_low": -60.92, "ci95_high": -53.13,
        "promoters": 12.02, "detractors": 69.05,
    }  # fmt: skip
    churn = churn_scores(_of(telco[0], topics.CUSTOMERS), _of(telco[0], topics.CANCELLATIONS))
    assert dict(_rounded(churn, 4)) == {
        "customers": 7043, "cancellations": 1869, "churn_rate": 0.2654, "lost_mrr": 139130.85,
        "churn_rate[Month-to-month]": 0.4271, "churn_rate[One year]": 0.1127,
        "churn_rate[Two year]": 0.0283,
    }  # fmt: skip
    assert dict(_rounded(support_scores([e for _t, _k, e in itsm[0]]), 4)) == {
        "opened": 24918,
        "first_response_p50_s": 780.0,  # 13 min
        "first_response_p90_s": 299_760.0,  # 83.3 h
        "resolution_p50_s": 79_560.0,  # 22.1 h
        "resolution_p90_s": 1_373_580.0,  # 381.6 h = 15.9 days
        "resolution_rate": 0.9376,
        "reopen_rate": 0.0142,
    }
