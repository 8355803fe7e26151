"""The third-party adjustments of streams/compat.py still match the code they adjust."""

from __future__ import annotations

import inspect
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator

from streams import compat


class _Coordinator:
    """Just the state ``_maybe_leave_group`` reads, with a recording ``_send_req``."""

    def __init__(self, generation: int, member_id: str, instance: str | None = None) -> None:
        self.generation, self.member_id, self._group_instance_id = generation, member_id, instance
        self.group_id = "g"
        self.sent: list[Any] = []

    async def _send_req(self, request: Any) -> None:
        self.sent.append(request)

    def reset_generation(self) -> None:
        self.generation, self.member_id = -1, ""


def test_aiokafka_still_skips_leave_group_at_generation_0() -> None:
    """If this fails, aiokafka changed the check compat.py works around: review compat.py."""
    import aiokafka.consumer.group_coordinator as gc

    body = inspect.getsource(gc).split("async def _maybe_leave_group(self):", 1)[1]
    body = body.split("\n    def ", 1)[0].split("\n    async def ", 1)[0]
    assert "if self.generation > 0 and self._group_instance_id is None:" in body
    assert "self.reset_generation()" in body


async def test_leave_group_is_sent_at_tansu_generation_0() -> None:
    compat.install()
    for generation, member, instance, sends in (
        (0, "m-1", None, 1),  # Tansu's first generation: leave
        (3, "m-1", None, 1),  # Kafka-style generation: unchanged
        (-1, "", None, 0),  # not a member: nothing to leave
        (0, "m-1", "static-1", 0),  # static membership never leaves (aiokafka's rule)
    ):
        c = _Coordinator(generation, member, instance)
        await GroupCoordinator._maybe_leave_group(c)  # type: ignore[arg-type]
        assert len(c.sent) == sends, (generation, member, instance)
        assert c.generation == -1 and c.member_id == ""  # reset after, as aiokafka does
        if sends:
            assert c.sent[0]._member_id == "m-1"
