"""Kinds: dataset-specific rewrites of a mapping's row stream, named by ``kind`` in the TOML.

A kind takes the rows (skip rules applied) and yields rows for the generic field mapping, adding
virtual columns (``_name``) the targets can read; its options come from ``[kind_options]``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from streams.mappings import (
    Mapping,
    MappingError,
    ReplayStats,
    Row,
    parse_time,
    parse_tz,
    to_int,
)

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
    fmt, tz = str(o.get("time_format", "iso")), parse_tz(str(o.get("tz", "UTC")))
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
            order = to_int(row.get(col["order_by"]) or 0)
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
            reopened = to_int(row.get(col["reopen_count"]) or 0)
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
            tenure = to_int(str(row.get(tenure_col, "")).strip())
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


KINDS: dict[str, Kind] = {"rows": _rows, "itsm_incidents": _itsm, "telco_churn": _telco}
