"""Dimension members of an event (SPEC §4): ``all``, single dimensions and pairs."""

from __future__ import annotations

from collections.abc import Iterable

ALL = ("all", "all")
OTHER = "other"
_UNSAFE = str.maketrans({"|": "_", "=": "_", "+": "_"})


def clean(value: str) -> str:
    """Member text safe inside a score key ``metric|window|dimension=member``."""
    value = value.strip()[:64]
    return value.translate(_UNSAFE) if value else "unknown"


def event_members(dims: dict[str, str], dimensions: Iterable[str]) -> list[tuple[str, str]]:
    """Every ``(dimension, member)`` an event counts in; dimensions it lacks are skipped."""
    out = []
    for dim in dimensions:
        if dim == "all":
            out.append(ALL)
            continue
        parts = dim.split("+")
        try:
            members = [clean(dims[p]) for p in parts]
        except KeyError:
            continue
        out.append((dim, "+".join(members)))
    return out


class MemberCap:
    """At most ``limit`` distinct members per dimension; the rest fold into ``other``.

    Deterministic for a given order of events; the first members seen are kept. ``known`` is
    persisted by the caller so a restart keeps the same choice.
    """

    def __init__(self, limit: int, known: dict[str, list[str]] | None = None) -> None:
        self.limit = limit
        self.known: dict[str, set[str]] = {d: set(m) for d, m in (known or {}).items()}
        self.changed = False

    def fold(self, dim: str, member: str) -> str:
        if dim == "all":
            return member
        seen = self.known.setdefault(dim, set())
        if member in seen:
            return member
        if len(seen) < self.limit:
            seen.add(member)
            self.changed = True
            return member
        return OTHER

    def dump(self) -> dict[str, list[str]]:
        return {d: sorted(m) for d, m in self.known.items()}
