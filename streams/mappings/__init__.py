"""Replay mappings: how the rows of a CSV/JSONL file become input events (SPEC §2).

A mapping is a TOML file (the built-in ones sit next to this module: ``itsm``, ``olist``,
``skytrax``, ``telco``; the format is described in ``docs/datasets.md``):

1. rows are read (CSV or JSON Lines; gzip when the name ends in ``.gz``), each with ``_row``,
   its 1-based data row number;
2. rows matching a ``[[skip]]`` rule are dropped, counted by the rule's ``reason``;
3. a ``kind`` may rewrite the row stream (:mod:`streams.mappings.kinds`): ``rows`` (default)
   leaves it alone; ``itsm_incidents`` folds an incident event log into one row per ticket
   state change; ``telco_churn`` assigns dates to a dateless churn table;
4. every ``[[targets]]`` entry (optionally ``when`` a condition holds) maps the row to one
   event, field by field: ``column`` / ``const`` / ``template`` / ``coalesce``, then in this
   fixed order null markers, ``map``, ``type``, ``time`` (+ ``tz``), ``clamp``, ``round``,
   ``default`` / ``required``. A bad value skips the whole row (reason ``bad_<field>``,
   ``missing_<field>``, ``unmapped_<field>``).

Time fields hold aware datetimes here; :mod:`streams.replay` orders, shifts and serialises.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import re
import string
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

Row = dict[str, Any]

MAPPINGS_DIR = Path(__file__).resolve().parent
REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout (editable install)
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
            parts.append(
                "skipped " + ", ".join(f"{r} {n:,}" for r, n in sorted(self.skipped.items()))
            )
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


def parse_tz(text: str) -> tzinfo:
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


def to_int(value: Any) -> int:
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


_TYPES: dict[str, Callable[[Any], Any]] = {
    "int": to_int,
    "float": _to_float,
    "str": str,
    "bool": _to_bool,
}

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
            tz=parse_tz(spec.get("tz", "UTC")),
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
    path = Path(name_or_path)
    if not path.exists() and path.suffix != ".toml" and len(path.parts) == 1:
        raise MappingError(f"no mapping {str(name_or_path)!r}: built-in ones are {list(BUILTIN)}")
    return path


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
    from streams.mappings.kinds import KINDS

    if kind not in KINDS:
        raise MappingError(f"{where}: kind must be one of {sorted(KINDS)}")
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


# --- rows -> events ----------------------------------------------------------------------


def epoch_ms(t: datetime) -> int:
    return (t - _EPOCH) // _ONE_MS


@dataclass
class Pending:
    t_ms: int | None  # the event time it is ordered by
    topic: str
    key: str
    value: Row  # time fields hold aware datetimes until serialised


def map_rows(mapping: Mapping, path: Path, stats: ReplayStats) -> Iterator[Pending]:
    """The events of ``path`` in file order (time fields as aware datetimes)."""
    from streams.mappings.kinds import KINDS

    rows = KINDS[mapping.kind](read_rows(mapping, path, stats), mapping, stats)
    nulls = mapping.null_values
    for row in rows:
        out: list[Pending] = []
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
                t_ms = epoch_ms(t) if isinstance(t, datetime) else None
                out.append(Pending(t_ms, target.topic, str(key), value))
        except _SkipRow as skip:
            stats.skipped[skip.reason] += 1
            continue
        yield from out
