"""orjson, wrapped once: every JSON byte in and out of CX Pulse goes through here."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    # OPT_NON_STR_KEYS: count dicts keyed by int (histogram buckets) serialise directly.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
