"""Fault injection for tests/integration/test_agent_crashes.py, loaded by a worker started with
this directory on PYTHONPATH. ``CX_TEST_FAIL_COMMIT=<input topic>:<n>``: the first ``n`` stage-1
commits of that topic write the batch's state to the changelog, then raise before the seal (a
bug or a send error in the commit path: the agent crashes with its state half written)."""

from __future__ import annotations

import os
import sys
from typing import Any

_SPEC = os.environ.get("CX_TEST_FAIL_COMMIT")

if _SPEC:
    from streams.agents import fold as _fold

    _topic, _n = _SPEC.rsplit(":", 1)
    _left = [int(_n)]
    _commit = _fold.commit

    async def _failing(
        ctx: Any, table: Any, topic_name: str, result: Any, gone: Any = None
    ) -> None:
        if topic_name != _topic or _left[0] <= 0:
            await _commit(ctx, table, topic_name, result, gone)
            return
        _left[0] -= 1
        table.write_many(result.writes)
        table.write_dedupe(result.dedupe)
        await table.send_staged()
        await table.changelog_sent()
        print(f"TEST FAULT: commit of {topic_name} failed ({_left[0]} more to fail)",
              file=sys.stderr, flush=True)  # fmt: skip
        raise RuntimeError(f"TEST FAULT: injected commit failure on {topic_name}")

    _fold.commit = _failing  # type: ignore[assignment]
