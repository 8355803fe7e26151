"""Base class of the counts made only of scalar fields (ints and floats).

Serialisation, comparison, copy and merge are generic over ``_FIELDS``; folding (``add``) and
the in-place merge (``iadd``) stay explicit in each subclass because they are the hot path.
"""

from __future__ import annotations

import inspect
from operator import attrgetter
from typing import Any, ClassVar, Self


class FlatCounts:
    """Counts made of scalar fields: generic serialisation, comparison and merge.

    ``_FIELDS`` lists ``(name, type)`` in changelog order; ``iadd`` stays explicit per class.
    """

    __slots__ = ()
    _FIELDS: ClassVar[tuple[tuple[str, type], ...]] = ()
    _values: ClassVar[Any] = None  # attrgetter of every field: to_list() is on the hot path
    _types: ClassVar[list[type]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = [name for name, _ in cls._FIELDS]
        if len(names) > 1:  # attrgetter of one name returns the value, not a tuple
            cls._values = attrgetter(*names)
        cls._types = [typ for _, typ in cls._FIELDS]
        # from_list() passes the fields to __init__ by position
        params = list(inspect.signature(cls.__init__).parameters)[1:]
        if params != names:
            raise TypeError(f"{cls.__name__}.__init__ must take {names} in order, not {params}")

    @classmethod
    def empty(cls) -> Self:
        return cls()

    def iadd(self, other: Self) -> None:
        raise NotImplementedError

    def merge(self, other: Self) -> Self:
        out = self.copy()
        out.iadd(other)
        return out

    def copy(self) -> Self:
        return self.from_list(self.to_list())

    def is_empty(self) -> bool:
        return all(getattr(self, name) == 0 for name, _ in self._FIELDS)

    def to_list(self) -> list[Any]:
        if self._values is not None:
            return list(self._values(self))
        return [getattr(self, name) for name, _ in self._FIELDS]

    @classmethod
    def from_list(cls, data: list[Any]) -> Self:
        types = cls._types
        if list(map(type, data)) == types:  # what to_list() wrote: nothing to convert
            return cls(*data)
        if len(data) != len(types):
            raise ValueError(f"{cls.__name__}: expected {len(types)} fields, got {data!r}")
        # One __init__ call: a default instance and a setattr() per field cost 2-3x as much,
        # and stage 2 parses a bucket per source and evaluation (profile 2026-12-03).
        return cls(*[typ(value) for typ, value in zip(types, data, strict=True)])

    def to_dict(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name, _ in self._FIELDS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlatCounts) or type(other) is not type(self):
            return NotImplemented
        return self.to_list() == other.to_list()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name, _ in self._FIELDS)
        return f"{type(self).__name__}({fields})"
