"""Shared fixtures.

One embedded Tansu broker per test session (starting one takes milliseconds, but consumer-group
state would leak between tests anyway). Tests isolate themselves with a fresh ``app_id`` per
``make_settings()`` call (internal topics and consumer groups) or fresh topic names.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from streams.broker import EmbeddedBroker
from streams.settings import Settings
from streams.topics import create_topics, topic_specs

MakeSettings = Callable[..., Settings]
CreateTopics = Callable[[Settings], Awaitable[list[str]]]


# --- broker -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A Tansu broker on a free loopback port for the whole session (log in a tmp dir)."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


@pytest.fixture
def make_settings(broker: EmbeddedBroker) -> MakeSettings:
    """``make_settings(**overrides)``: Settings for ``broker`` with a unique ``app_id``."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "broker": broker.url,
            "app_id": f"cx-test-{uuid.uuid4().hex[:12]}",
            "partitions": 4,
            # Tansu delays a join by the session timeout of a member that died without leaving.
            "session_timeout": 6.0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def create_all_topics(broker: EmbeddedBroker) -> CreateTopics:
    """``await create_all_topics(settings)``: every topic of ``settings``, idempotently.

    The ``cx.*`` topics are shared by the whole session (first creator's partition count wins);
    only the ``{app_id}-*`` topics are new per settings.
    """

    async def create(settings: Settings) -> list[str]:
        return await create_topics(broker.bootstrap, topic_specs(settings))

    return create
