"""``cxpulse replay``: CSV/JSONL history into the input topics, driven by a TOML mapping.

A mapping (``streams/mappings/*.toml``; ``docs/datasets.md`` has the format) describes one
source file and turns each row into events of the input contract (SPEC §2):

1. read rows (CSV or JSON Lines; gzip when the name ends in ``.gz``), each with ``_row``, its
   1-based data row number;
2. drop rows matching a ``[[skip]]`` rule, counted by the rule's ``reason``;
3. a ``kind`` may rewrite the row stream: ``rows`` (default) leaves it alone;
   ``itsm_incidents`` folds an incident event log into one row per ticket state change;
   ``telco_churn`` assigns dates to a dateless churn table (Python below, options in the file);
4. every ``[[targets]]`` entry (optionally ``when`` a condition holds) maps the row to one event
   field by field: ``column`` / ``const`` / ``template`` / ``coalesce``, then in this fixed order
   null markers, ``map``, ``type``, ``time`` (+ ``tz``), ``clamp``, ``round``;
5. events are ordered by event time (``order = "time"``, the default: a replay then moves the
   worker's watermark forward like live traffic) or kept in file order, optionally shifted in
   time (``--shift-to-now``), and checked with :func:`streams.events.decode`: a row that would be
   dead-lettered is skipped here instead (reason ``invalid_<code>``), so replays are clean.

Events keep their times as RFC 3339 strings with the offset of the source (``Z`` for UTC).
Ids come from the data (``template``), so replaying a file twice counts its events once.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import gzip
import hashlib
import io
import re
import string
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import IO, Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from streams import events as ev
from streams.settings import Settings

Row = dict[str, Any]
Message = tuple[str, bytes, bytes]

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
REPO_ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ("itsm", "olist", "skytrax", "telco")

# Field names per topic (SPEC §2): required ones first. Unknown names are mapping errors.
_REQUIRED: dict[str, tuple[str, ...]] = {
    ev.TOPIC_SURVEYS: ("response_id", "customer_id", "survey", "score", "occurred_at"),
    ev.TOPIC_SUPPORT: ("interaction_id", "customer_id", "status", "occurred_at"),
    ev.TOPIC_CANCELLATIONS: ("cancellation_id", "customer_id", "occurred_at"),
    ev.TOPIC_CUSTOMERS: ("customer_id", "status"),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {
    ev.TOPIC_SURVEYS: (*ev.SURVEY_DIMS, "comment", "scale_min", "scale_max"),
    ev.TOPIC_SUPPORT: ("event_id", "opened_at", *ev.SUPPORT_DIMS),
    ev.TOPIC_CANCELLATIONS: ("mrr", "reason", *ev.CANCELLATION_DIMS),
    ev.TOPIC_CUSTOMERS: ("started_at", "mrr", *ev.CUSTOMER_DIMS),
}
TIME_FIELDS = ("occurred_at", "opened_at", "started_at")
# The time an event is ordered by (customers are state: ordered by when they started).
_SORT_FIELD = {topic: "occurred_at" for topic in _REQUIRED} | {ev.TOPIC_CUSTOMERS: "started_at"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class MappingError(ValueError):
    """The mapping file is malformed (the message names the file and the offending key)."""


class _SkipRow(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ReplayStats:
    rows: int = 0  # source rows read
    events: int = 0  # events yielded (rows_to_events) or acknowledged by the broker (replay)
    skipped: Counter[str] = field(default_factory=Counter)  # rows/events dropped, by reason
    notes: Counter[str] = field(default_factory=Counter)  # events a kind could not derive
    topics: Counter[str] = field(default_factory=Counter)  # events per topic
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{self.events:,} events from {self.rows:,} rows"]
        parts.append(", ".join(f"{t} {n:,}" for t, n in sorted(self.topics.items())) or "-")
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{r} {n:,}" for r, n in sorted(self.skipped.items())))
        if self.notes:
            parts.append("notes " + ", ".join(f"{r} {n:,}" for r, n in sorted(self.notes.items())))
        if self.seconds:
            parts.append(f"{self.seconds:.1f} s")
        return "; ".join(parts)


# --- mapping model -------------------------------------------------------------------------


def _check_keys(where: str, table: dict[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _parse_tz(text: str) -> tzinfo:
    """``UTC`` / ``Z``, a fixed offset ``+03:00`` / ``-0300``, or an IANA zone name."""
    if text.upper() in ("UTC", "Z"):
        return UTC
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if m:
        delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
        return timezone(-delta if m[1] == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(f"unknown time zone {text!r}") from exc


_COND_OPS = ("blank", "equals", "in", "prefix", "regex")


@dataclass(frozen=True)
class Condition:
    """``{column = "c", <op> = value, not = false}``; ops: blank, equals, in, prefix, regex.

    Values are compared as stripped strings; ``blank`` is true for an empty cell, a missing
    column and the source's null markers.
    """

    column: str
    op: str
    value: Any
    negate: bool = False

    @classmethod
    def parse(cls, where: str, table: dict[str, Any], extra: Iterable[str] = ()) -> Condition:
        _check_keys(where, table, ("column", "not", *_COND_OPS, *extra))
        ops = [op for op in _COND_OPS if op in table]
        if "column" not in table or len(ops) != 1:
            raise MappingError(f"{where}: needs `column` and exactly one of {list(_COND_OPS)}")
        op, value = ops[0], table[ops[0]]
        if op == "in":
            value = frozenset(str(v) for v in value)
        elif op == "regex":
            value = re.compile(value)
        elif op == "blank" and value is not True:
            raise MappingError(f"{where}: write `blank = true` (and `not = true` to negate)")
        else:
            value = str(value)
        return cls(str(table["column"]), op, value, bool(table.get("not", False)))

    def matches(self, row: Row, nulls: frozenset[str]) -> bool:
        raw = row.get(self.column)
        text = "" if raw is None else str(raw).strip()
        if self.op == "blank":
            hit = text == "" or text in nulls
        elif self.op == "equals":
            hit = text == self.value
        elif self.op == "in":
            hit = text in self.value
        elif self.op == "prefix":
            hit = text.startswith(self.value)
        else:
            hit = self.value.search(text) is not None
        return hit != self.negate


@dataclass(frozen=True)
class Skip:
    reason: str
    when: Condition


_TYPES: dict[str, Callable[[Any], Any]] = {}


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not an integer")
    return int(number)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "t"):
        return True
    if text in ("0", "false", "no", "n", "f"):
        return False
    raise ValueError(f"{value!r} is not a boolean")


_TYPES.update(int=_to_int, float=_to_float, str=str, bool=_to_bool)

_FIELD_KEYS = ("column", "const", "template", "coalesce", "null", "map", "map_default",
               "map_strict", "type", "time", "tz", "clamp", "round", "required", "default")  # fmt: skip


@functools.lru_cache(maxsize=65_536)
def _strptime(text: str, fmt: str) -> datetime:
    return datetime.strptime(text, fmt)  # noqa: DTZ007 (the zone is applied by the caller)


def parse_time(value: Any, fmt: str, tz: tzinfo) -> datetime:
    """An aware datetime from ``value`` per ``fmt``: a strptime format, ``iso``, ``epoch_s``
    or ``epoch_ms``; a naive result is taken to be in ``tz``. Datetimes pass through."""
    if isinstance(value, datetime):
        parsed = value
    elif fmt in ("epoch_ms", "epoch_s"):
        number = _to_float(value)
        return _EPOCH + timedelta(milliseconds=number if fmt == "epoch_ms" else number * 1000)
    elif fmt == "iso":
        parsed = datetime.fromisoformat(str(value).strip())
    else:
        parsed = _strptime(str(value).strip(), fmt)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


_NO_DEFAULT = object()


@dataclass(frozen=True)
class FieldSpec:
    """How one event field is computed from a row (see the module docstring for the order)."""

    name: str
    column: str | None = None
    const: Any = None
    template: str | None = None
    coalesce: tuple[str, ...] = ()
    nulls: frozenset[str] = frozenset()
    mapping: dict[str, Any] | None = None
    map_default: Any = _NO_DEFAULT
    map_strict: bool = False
    type: str | None = None
    time: str | None = None
    tz: tzinfo = UTC
    clamp: tuple[float | None, float | None] | None = None
    round: int | None = None
    required: bool = False
    default: Any = None

    @classmethod
    def parse(cls, where: str, name: str, spec: Any, required: bool) -> FieldSpec:
        if not isinstance(spec, dict):
            spec = {"const": spec}  # `survey = "nps"` is short for `survey = { const = "nps" }`
        _check_keys(where, spec, _FIELD_KEYS)
        sources = [k for k in ("column", "const", "template", "coalesce") if k in spec]
        if len(sources) != 1:
            raise MappingError(f"{where}: exactly one of column/const/template/coalesce")
        kind = spec.get("type")
        if kind is not None and kind not in _TYPES:
            raise MappingError(f"{where}: type must be one of {sorted(_TYPES)}")
        clamp = spec.get("clamp")
        if clamp is not None and (not isinstance(clamp, list) or len(clamp) != 2):
            raise MappingError(f"{where}: clamp = [low, high]")
        fmt = spec.get("time")
        if fmt is None and name in TIME_FIELDS:
            fmt = "iso"
        if "tz" in spec and fmt is None:
            raise MappingError(f"{where}: tz needs time")
        return cls(
            name=name,
            column=spec.get("column"),
            const=spec.get("const"),
            template=spec.get("template"),
            coalesce=tuple(spec.get("coalesce", ())),
            nulls=frozenset(str(v) for v in spec.get("null", ())),
            mapping={str(k): v for k, v in spec["map"].items()} if "map" in spec else None,
            map_default=spec.get("map_default", _NO_DEFAULT),
            map_strict=bool(spec.get("map_strict", False)),
            type=kind,
            time=fmt,
            tz=_parse_tz(spec.get("tz", "UTC")),
            clamp=(clamp[0], clamp[1]) if clamp is not None else None,
            round=spec.get("round"),
            required=bool(spec.get("required", required)),
            default=spec.get("default"),
        )

    def columns(self) -> set[str]:
        """Source columns this field reads (templates included)."""
        if self.column is not None:
            return {self.column}
        if self.template is not None:
            return {f for _t, f, _s, _c in string.Formatter().parse(self.template) if f}
        return set(self.coalesce)

    def _clean(self, value: Any, nulls: frozenset[str]) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value == "" or value in nulls or value in self.nulls:
                return None
        return value

    def value(self, row: Row, nulls: frozenset[str]) -> Any:
        """The field's value, None when absent; raises _SkipRow on a bad value."""
        if self.column is not None:
            value = self._clean(row.get(self.column), nulls)
        elif self.template is not None:
            try:
                value = self.template.format_map(row)
            except (KeyError, IndexError, ValueError) as exc:
                raise _SkipRow(f"bad_{self.name}") from exc
        elif self.coalesce:
            value = next(
                (v for c in self.coalesce if (v := self._clean(row.get(c), nulls)) is not None),
                None,
            )
        else:
            value = self.const
        try:
            value = self._convert(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise _SkipRow(f"bad_{self.name}") from exc
        if value is None:
            if self.default is not None:
                return self.default
            if self.required:
                raise _SkipRow(f"missing_{self.name}")
        return value

    def _convert(self, value: Any) -> Any:
        if value is not None and self.mapping is not None:
            key = value if isinstance(value, str) else str(value)
            if key in self.mapping:
                value = self.mapping[key]
            elif self.map_strict:
                raise _SkipRow(f"unmapped_{self.name}")
            elif self.map_default is not _NO_DEFAULT:
                value = self.map_default
        if value is None:
            return None
        if self.type is not None:
            value = _TYPES[self.type](value)
        if self.time is not None:
            value = parse_time(value, self.time, self.tz)
        if self.clamp is not None:
            low, high = self.clamp
            value = value if low is None or value >= low else low
            value = value if high is None or value <= high else high
        if self.round is not None:
            value = round(value, self.round)
        return value


@dataclass(frozen=True)
class Target:
    topic: str
    fields: tuple[FieldSpec, ...]
    when: Condition | None = None
    key: str = "customer_id"


@dataclass(frozen=True)
class Mapping:
    """One source file and how its rows become events."""

    name: str
    path: Path | None  # the TOML file (None when built in code)
    targets: tuple[Target, ...]
    description: str = ""
    dataset: str | None = None  # default input, relative to the repository root
    format: str = "csv"
    delimiter: str = ","
    encoding: str = "utf-8"
    null_values: frozenset[str] = frozenset()
    order: str = "time"
    skips: tuple[Skip, ...] = ()
    kind: str = "rows"
    kind_options: dict[str, Any] = field(default_factory=dict)

    def with_kind_options(self, **options: Any) -> Mapping:
        """A copy with some ``[kind_options]`` replaced (``None`` values are ignored)."""
        set_ = {k: v for k, v in options.items() if v is not None}
        return replace(self, kind_options={**self.kind_options, **set_}) if set_ else self

    def columns(self) -> set[str]:
        used = {c for t in self.targets for f in t.fields for c in f.columns()}
        return used | {t.when.column for t in self.targets if t.when is not None}

    def dataset_path(self) -> Path:
        """The default input: ``dataset`` relative to the repository root, else to the cwd."""
        if self.dataset is None:
            raise MappingError(f"mapping {self.name!r} records no dataset: pass --input")
        candidates = [REPO_ROOT / self.dataset, Path.cwd() / self.dataset]
        for candidate in candidates:
            if candidate.exists():
                return candidate.resolve()
        tried = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"dataset of mapping {self.name!r} not found (tried {tried})")


_TOP_KEYS = ("name", "description", "dataset", "kind", "source", "skip", "targets",
             "kind_options")  # fmt: skip
_SOURCE_KEYS = ("format", "delimiter", "encoding", "null_values", "order")


def resolve_mapping(name_or_path: str | Path) -> Path:
    """A built-in name (``olist``) or a path to a TOML file."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN:
        return MAPPINGS_DIR / f"{name_or_path}.toml"
    return Path(name_or_path)


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a TOML mapping (or a built-in one by name)."""
    path = resolve_mapping(path)
    with open(path, "rb") as fh:
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise MappingError(f"{path}: {exc}") from exc
    where = str(path)
    _check_keys(where, doc, _TOP_KEYS)
    source = doc.get("source", {})
    _check_keys(f"{where} [source]", source, _SOURCE_KEYS)
    fmt = source.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        raise MappingError(f"{where}: source.format must be csv or jsonl")
    order = source.get("order", "time")
    if order not in ("time", "file"):
        raise MappingError(f"{where}: source.order must be time or file")
    kind = doc.get("kind", "rows")
    if kind not in _KINDS:
        raise MappingError(f"{where}: kind must be one of {sorted(_KINDS)}")
    skips = []
    for i, table in enumerate(doc.get("skip", [])):
        w = f"{where} [[skip]] #{i + 1}"
        if "reason" not in table:
            raise MappingError(f"{w}: needs a reason")
        skips.append(Skip(str(table["reason"]), Condition.parse(w, table, extra=("reason",))))
    targets = []
    for i, table in enumerate(doc.get("targets", [])):
        w = f"{where} [[targets]] #{i + 1}"
        _check_keys(w, table, ("topic", "when", "key", "fields"))
        topic = table.get("topic")
        if topic not in _REQUIRED:
            raise MappingError(f"{w}: topic must be one of {sorted(_REQUIRED)}")
        required, known = _REQUIRED[topic], _REQUIRED[topic] + _OPTIONAL[topic]
        fields = table.get("fields", {})
        _check_keys(f"{w} fields", fields, known)
        missing = [f for f in required if f not in fields]
        if missing:
            raise MappingError(f"{w}: {topic} needs the field(s) {missing}")
        specs = tuple(
            FieldSpec.parse(f"{w} fields.{n}", n, s, n in required) for n, s in fields.items()
        )
        when = Condition.parse(f"{w} when", table["when"]) if "when" in table else None
        key = table.get("key", "customer_id")
        if key not in fields:
            raise MappingError(f"{w}: key field {key!r} is not mapped")
        targets.append(Target(topic, specs, when, key))
    if not targets:
        raise MappingError(f"{where}: no [[targets]]")
    return Mapping(
        name=str(doc.get("name", path.stem)),
        path=path,
        targets=tuple(targets),
        description=str(doc.get("description", "")),
        dataset=doc.get("dataset"),
        format=fmt,
        delimiter=source.get("delimiter", ","),
        encoding=source.get("encoding", "utf-8"),
        null_values=frozenset(str(v) for v in source.get("null_values", ())),
        order=order,
        skips=tuple(skips),
        kind=kind,
        kind_options=dict(doc.get("kind_options", {})),
    )


# --- reading rows --------------------------------------------------------------------------


def _open_text(path: Path, encoding: str) -> TextIO:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")  # noqa: SIM115 (closed by the caller)


def read_rows(mapping: Mapping, path: Path, stats: ReplayStats) -> Iterator[Row]:
    """Rows of ``path`` with ``_row`` (1-based data row number); skip rules applied."""
    with _open_text(path, mapping.encoding) as fh:
        if mapping.format == "csv":
            source: Iterator[Row | None] = csv.DictReader(fh, delimiter=mapping.delimiter)
        else:
            source = _jsonl(fh, stats)
        for number, row in enumerate(source, start=1):
            stats.rows += 1
            if row is None:
                continue
            row["_row"] = number
            reason = next(
                (s.reason for s in mapping.skips if s.when.matches(row, mapping.null_values)),
                None,
            )
            if reason is not None:
                stats.skipped[reason] += 1
                continue
            yield row


def _jsonl(fh: IO[str], stats: ReplayStats) -> Iterator[Row | None]:
    for line in fh:
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            stats.skipped["bad_json"] += 1
            yield None
            continue
        if not isinstance(obj, dict):
            stats.skipped["not_object"] += 1
            yield None
            continue
        yield obj


# --- kinds: row-stream rewriters -------------------------------------------------------------

Kind = Callable[[Iterator[Row], Mapping, ReplayStats], Iterator[Row]]


def _rows(rows: Iterator[Row], mapping: Mapping, stats: ReplayStats) -> Iterator[Row]:
    return rows


@dataclass
class _Incident:
    order: int  # sys_mod_count of the representative row (the latest update)
    row: Row  # the representative row, pruned to the columns the targets use
    first_order: int
    caller: str | None  # the caller at the earliest update
    any_caller: str | None
    opened: datetime | None
    responded: datetime | None = None
    reopens: dict[int, datetime] = field(default_factory=dict)  # reopen level -> first time


def _itsm(rows: Iterator[Row], mapping: Mapping, stats: ReplayStats) -> Iterator[Row]:
    """An incident event log (one row per update) -> one row per ticket state change.

    Per incident (column ``incident``): ``opened`` at ``opened_at``; ``responded`` at the
    earliest ``updated_at`` of a row in ``responded_state``; ``reopened`` once per reopen (the
    k-th at the earliest update whose ``reopen_count`` >= k); ``resolved`` at ``resolved_at``.
    Every emitted row is the incident's latest update (highest ``order_by``, so dimensions are
    the final classification) plus ``_status``, ``_event`` (unique per incident), ``_at``,
    ``_opened_at`` (datetimes) and ``_customer`` (the caller at opening, else any caller, else
    the incident number). Order-independent: the log need not be sorted.
    """
    o = mapping.kind_options
    col = {k: str(o.get(k, k)) for k in ("incident", "opened_at", "resolved_at", "caller")}
    col |= {
        "order_by": str(o.get("order_by", "sys_mod_count")),
        "state": str(o.get("state", "incident_state")),
        "updated_at": str(o.get("updated_at", "sys_updated_at")),
        "reopen_count": str(o.get("reopen_count", "reopen_count")),
    }
    responded_state = str(o.get("responded_state", "Active"))
    fmt, tz = str(o.get("time_format", "iso")), _parse_tz(str(o.get("tz", "UTC")))
    nulls = mapping.null_values | {""}
    keep = mapping.columns() | {col["incident"], col["resolved_at"]}

    def when(row: Row, column: str) -> datetime | None:
        text = (row.get(column) or "").strip()
        if text in nulls:
            return None
        try:
            return parse_time(text, fmt, tz)
        except ValueError:
            stats.notes[f"bad_{column}"] += 1
            return None

    def known(text: str | None) -> str | None:
        text = (text or "").strip()
        return None if text in nulls else text

    incidents: dict[str, _Incident] = {}
    for row in rows:
        number = (row.get(col["incident"]) or "").strip()
        if not number:
            stats.skipped["missing_incident"] += 1
            continue
        try:
            order = _to_int(row.get(col["order_by"]) or 0)
        except ValueError:
            order = 0
        caller = known(row.get(col["caller"]))
        inc = incidents.get(number)
        if inc is None:
            inc = incidents[number] = _Incident(
                order, {k: row.get(k) for k in keep}, order, caller, caller,
                when(row, col["opened_at"]),
            )  # fmt: skip
        else:
            if order >= inc.order:
                inc.order, inc.row = order, {k: row.get(k) for k in keep}
            if order < inc.first_order:
                inc.first_order, inc.caller = order, caller
            inc.any_caller = inc.any_caller or caller
            if inc.opened is None:
                inc.opened = when(row, col["opened_at"])
        if (row.get(col["state"]) or "").strip() == responded_state:
            t = when(row, col["updated_at"])
            if t is not None and (inc.responded is None or t < inc.responded):
                inc.responded = t
        try:
            reopened = _to_int(row.get(col["reopen_count"]) or 0)
        except ValueError:
            reopened = 0
        if reopened > 0:
            t = when(row, col["updated_at"])
            for level in range(1, reopened + 1):
                if t is not None and (level not in inc.reopens or t < inc.reopens[level]):
                    inc.reopens[level] = t

    for number, inc in incidents.items():
        if inc.opened is None:
            stats.skipped["no_opened_at"] += 1
            continue
        base = dict(inc.row)
        base["_customer"] = inc.caller or inc.any_caller or number
        base["_opened_at"] = inc.opened

        def state(status: str, event: str, at: datetime, base: Row = base) -> Row:
            return {**base, "_status": status, "_event": event, "_at": at}

        yield state("opened", "opened", inc.opened)
        if inc.responded is not None:
            yield state("responded", "responded", inc.responded)
        else:
            stats.notes["no_responded_state"] += 1
        for level in sorted(inc.reopens):
            yield state("reopened", f"reopened-{level}", inc.reopens[level])
        resolved = when(inc.row, col["resolved_at"])
        if resolved is not None:
            yield state("resolved", "resolved", resolved)
        else:
            stats.notes["no_resolved_at"] += 1


def minus_months(t: datetime, months: int) -> datetime:
    """``t`` moved back by calendar months, the day clamped to the month's length."""
    index = t.year * 12 + (t.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    next_month = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=t.tzinfo)
    last_day = (next_month - timedelta(days=1)).day
    return t.replace(year=year, month=month, day=min(t.day, last_day))


def spread_seconds(seed: object, key: str, span_s: int) -> int:
    """A deterministic pseudo-random offset in ``[0, span_s)`` from ``(seed, key)`` alone, so
    a row's date does not depend on the other rows (or on ``--limit``)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % span_s


def _telco(rows: Iterator[Row], mapping: Mapping, stats: ReplayStats) -> Iterator[Row]:
    """A dateless churn table -> rows with ``_started_at`` and ``_cancelled_at`` datetimes.

    Churners cancel at ``anchor`` minus a seeded offset within ``spread_days``, and started
    ``tenure`` months before that; everyone else started ``tenure`` months before ``anchor``.
    """
    o = mapping.kind_options
    if "anchor" not in o:
        raise MappingError(f"{mapping.name}: kind telco_churn needs kind_options.anchor")
    anchor = parse_time(str(o["anchor"]), "iso", UTC)
    id_col, tenure_col = str(o.get("id", "customerID")), str(o.get("tenure", "tenure"))
    churn_col, churn_yes = str(o.get("churn", "Churn")), str(o.get("churn_yes", "Yes"))
    span_s = int(float(o.get("spread_days", 30)) * 86_400)
    seed = o.get("seed", 0)
    for row in rows:
        try:
            tenure = _to_int(str(row.get(tenure_col, "")).strip())
        except ValueError:
            stats.skipped["bad_tenure"] += 1
            continue
        if str(row.get(churn_col, "")).strip() == churn_yes:
            # ends 1 s before the anchor at the latest: the anchor itself is "now"
            cancelled = anchor - timedelta(seconds=1 + spread_seconds(seed, row[id_col], span_s))
            row["_cancelled_at"], row["_started_at"] = cancelled, minus_months(cancelled, tenure)
        else:
            row["_cancelled_at"], row["_started_at"] = None, minus_months(anchor, tenure)
        yield row


_KINDS: dict[str, Kind] = {"rows": _rows, "itsm_incidents": _itsm, "telco_churn": _telco}


# --- rows -> events ------------------------------------------------------------------------


def _ms(t: datetime) -> int:
    return (t - _EPOCH) // _ONE_MS


@dataclass
class _Pending:
    t_ms: int | None  # the event time it is ordered by
    topic: str
    key: str
    value: Row  # time fields hold aware datetimes until serialised


def _events(mapping: Mapping, path: Path, stats: ReplayStats) -> Iterator[_Pending]:
    rows = _KINDS[mapping.kind](read_rows(mapping, path, stats), mapping, stats)
    nulls = mapping.null_values
    for row in rows:
        out: list[_Pending] = []
        try:
            for target in mapping.targets:
                if target.when is not None and not target.when.matches(row, nulls):
                    continue
                value: Row = {}
                for spec in target.fields:
                    v = spec.value(row, nulls)
                    if v is not None:
                        value[spec.name] = v
                key = value.get(target.key)
                t = value.get(_SORT_FIELD[target.topic])
                out.append(
                    _Pending(_ms(t) if isinstance(t, datetime) else None, target.topic,
                             str(key), value)  # fmt: skip
                )
        except _SkipRow as skip:
            stats.skipped[skip.reason] += 1
            continue
        yield from out


def _max_time_ms(pending: Iterable[_Pending]) -> int | None:
    times = [
        _ms(v) for p in pending for f in TIME_FIELDS if isinstance(v := p.value.get(f), datetime)
    ]
    return max(times) if times else None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rows_to_events(
    mapping: Mapping,
    path: str | Path | None = None,
    *,
    limit: int | None = None,
    time_shift: int | str | None = None,
    stats: ReplayStats | None = None,
) -> Iterator[Message]:
    """``(topic, key, value)`` per event: key = the customer id, value = JSON bytes.

    ``time_shift``: ``None``; an offset in milliseconds added to every time field; or
    ``"now"``: the offset that moves the newest time of the file to the wall clock.
    ``limit`` caps the events yielded (after ordering). ``stats`` is filled as it goes.
    """
    stats = stats if stats is not None else ReplayStats()
    source = Path(path) if path is not None else mapping.dataset_path()
    pending: Iterable[_Pending] = _events(mapping, source, stats)
    if mapping.order == "time" or time_shift == "now":
        pending = list(pending)
        if mapping.order == "time":
            pending.sort(key=lambda p: -(2**63) if p.t_ms is None else p.t_ms)
    if time_shift == "now":
        newest = _max_time_ms(pending)
        shift_ms = 0 if newest is None else now_ms() - newest
    elif isinstance(time_shift, str):
        raise ValueError(f"time_shift must be 'now', milliseconds or None, not {time_shift!r}")
    else:
        shift_ms = time_shift or 0
    shift = timedelta(milliseconds=shift_ms)
    check_now = ev.MAX_TIME_MS  # no future check here: the worker applies its own clock
    produced = 0
    for p in pending:
        if limit is not None and produced >= limit:
            return
        value = p.value
        if shift:
            for f in TIME_FIELDS:
                if isinstance(t := value.get(f), datetime):
                    value[f] = t + shift
        raw = orjson.dumps(value, option=orjson.OPT_UTC_Z)
        decoded = ev.decode(p.topic, raw, check_now)
        if isinstance(decoded, ev.Rejection):
            stats.skipped[f"invalid_{decoded.reason}"] += 1
            continue
        produced += 1
        stats.events += 1
        stats.topics[p.topic] += 1
        yield p.topic, p.key.encode(), raw


# --- producing -----------------------------------------------------------------------------


class Progress:
    """``count/total events, rate/s, ETA`` on one ``\\r``-rewritten stderr line (a line every
    few seconds when stderr is not a terminal)."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else 5.0
        self.t0 = self.last = time.monotonic()
        self.count = 0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.count / elapsed
        text = f"{self.label}: {self.count:,}"
        if self.total is not None:
            text += f"/{self.total:,}"
        text += f" events  {rate:,.0f}/s"
        if self.total is not None and rate > 0:
            eta = int((self.total - self.count) / rate)
            text += f"  ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
        return text

    def update(self, count: int) -> None:
        self.count = count
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write(self.line())

    def close(self) -> None:
        self._write(self.line())
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write(f"\r{text}\x1b[K" if self.tty else f"{text}\n")
        self.stream.flush()


_CHUNK = 2000  # await delivery every this many sends: bounded memory, errors surface early


async def produce_messages(
    bootstrap: str,
    messages: Iterable[Message],
    *,
    rate: float | None = None,
    progress: Progress | None = None,
    linger_ms: int = 20,
) -> int:
    """Send ``(topic, key, value)`` at most ``rate`` per second; return the count acked."""
    from aiokafka import AIOKafkaProducer

    # Tansu fails InitProducerId: no idempotent producer; acks=all still waits for the write.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
        linger_ms=linger_ms, max_batch_size=256 * 1024,
    )  # fmt: skip
    pending: list[asyncio.Future[Any]] = []
    sent = acked = 0
    loop = asyncio.get_running_loop()
    try:
        await producer.start()
        t0 = loop.time()
        for topic, key, value in messages:
            if rate is not None:
                wait = t0 + sent / rate - loop.time()
                if wait > 0.002:
                    await asyncio.sleep(wait)
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= _CHUNK or (rate is not None and rate < _CHUNK):
                await asyncio.gather(*pending)
                acked += len(pending)
                pending.clear()
                if progress is not None:
                    progress.update(acked)
        await asyncio.gather(*pending)
        acked += len(pending)
        if progress is not None:
            progress.update(acked)
        return acked
    finally:
        await producer.stop()


async def replay(
    settings: Settings,
    mapping_path: str | Path | Mapping,
    data_path: str | Path | None = None,
    *,
    rate: float | None = None,
    limit: int | None = None,
    progress: bool = True,
    time_shift: int | str | None = None,
    kind_options: dict[str, Any] | None = None,
    create_topics: bool = True,
) -> ReplayStats:
    """Map ``data_path`` (default: the mapping's dataset) and produce it to ``settings``'
    broker. ``rate`` is messages per second (None: as fast as possible); ``time_shift`` as in
    :func:`rows_to_events` (``"now"`` = ``--shift-to-now``). Topics are created first
    (idempotent): Tansu would auto-create a missing one without configs."""
    mapping = mapping_path if isinstance(mapping_path, Mapping) else load_mapping(mapping_path)
    mapping = mapping.with_kind_options(**(kind_options or {}))
    stats = ReplayStats()
    started = time.monotonic()
    # Materialised: the total gives the ETA, and a bad file fails before anything is sent.
    messages = list(
        rows_to_events(mapping, data_path, limit=limit, time_shift=time_shift, stats=stats)
    )
    if create_topics:
        from streams.topics import create_topics as create, topic_specs

        await create(settings.bootstrap, topic_specs(settings))
    bar = Progress(f"replay {mapping.name}", len(messages)) if progress else None
    try:
        stats.events = await produce_messages(
            settings.bootstrap, messages, rate=rate, progress=bar
        )
    finally:
        if bar is not None:
            bar.close()
    stats.seconds = time.monotonic() - started
    return stats


# --- CLI -----------------------------------------------------------------------------------


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    try:
        mapping = load_mapping(args.mapping).with_kind_options(anchor=args.anchor)
    except (OSError, MappingError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    shift: str | None = "now" if args.shift_to_now else None
    if args.dry_run:
        stats = ReplayStats()
        count = 10 if args.limit is None else args.limit
        for topic, key, value in rows_to_events(
            mapping, args.input, limit=count, time_shift=shift, stats=stats
        ):
            line = {"topic": topic, "key": key.decode(), "value": orjson.loads(value)}
            print(orjson.dumps(line).decode())
        print(f"dry run ({mapping.name}): {stats.summary()}", file=sys.stderr)
        return 0
    stats = asyncio.run(
        replay(settings, mapping, args.input, rate=args.rate, limit=args.limit,
               progress=not args.quiet, time_shift=shift)  # fmt: skip
    )
    print(f"replayed {mapping.name}: {stats.summary()}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``replay`` on an ``add_subparsers()`` object; returns the new parser (so the
    caller can add the shared settings options)."""
    p = subparsers.add_parser(
        "replay",
        help="replay CSV/JSONL history into the input topics",
        description="Map a CSV/JSONL file to input events with a TOML mapping and produce them.",
    )
    p.add_argument(
        "--mapping", required=True, metavar="NAME|PATH",
        help=f"mapping TOML file, or a built-in one: {', '.join(BUILTIN)}",
    )  # fmt: skip
    p.add_argument("--input", default=None, metavar="PATH",
                   help="data file (.csv/.jsonl, optionally .gz); default: the mapping's dataset")  # fmt: skip
    p.add_argument("--rate", type=float, default=None, help="messages per second (default: max)")
    p.add_argument("--limit", type=int, default=None,
                   help="produce at most N events (dry run: print N, default 10)")  # fmt: skip
    p.add_argument("--shift-to-now", action="store_true",
                   help="shift all times so that the newest event is now (for a live worker)")  # fmt: skip
    p.add_argument("--anchor", default=None, metavar="RFC3339",
                   help="telco: the date the churn table describes (default in the mapping)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true",
                   help="print events as JSON lines instead of producing")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(fn=cmd_replay)
    return p


__all__ = [
    "BUILTIN",
    "Condition",
    "FieldSpec",
    "Mapping",
    "MappingError",
    "Progress",
    "ReplayStats",
    "Target",
    "add_parser",
    "load_mapping",
    "minus_months",
    "parse_time",
    "produce_messages",
    "replay",
    "rows_to_events",
    "spread_seconds",
]
