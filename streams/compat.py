"""Small, named adjustments to third-party behaviour, installed by :func:`install`.

Each one is covered by ``tests/unit/test_compat.py``, which fails if an upgrade changes the code
it adjusts (versions pinned in ``pyproject.toml``).

LeaveGroup on generation 0
    aiokafka (0.14, ``GroupCoordinator._maybe_leave_group``) sends LeaveGroup on close only when
    ``generation > 0``; Kafka's first generation is 1, but Tansu numbers a group's first
    generation 0. Without this the first worker of a group never leaves it on SIGTERM and the
    next worker's join waits out the session timeout plus a second join round. LeaveGroup
    carries no generation, so reporting 1 for that call changes nothing else; aiokafka resets
    the generation right after it (``reset_generation``).
"""

from __future__ import annotations

from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    original = GroupCoordinator._maybe_leave_group

    async def _maybe_leave_group(self: Any) -> None:
        if self.generation == 0 and self.member_id and self._group_instance_id is None:
            self.generation = 1  # Tansu's first generation: still a member, so leave
        await original(self)

    GroupCoordinator._maybe_leave_group = _maybe_leave_group  # type: ignore[method-assign]
