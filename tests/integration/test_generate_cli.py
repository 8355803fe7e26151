"""``cxpulse generate --count 0`` (the demo's live generator) stops on Ctrl-C without a
traceback on the terminal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from streams.broker import EmbeddedBroker
from streams.settings import Settings
from streams.topics import SURVEY_RESPONSES, create_topics, topic_specs
from tests.integration import harness
from tests.integration.faults import fresh_broker  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def _any(broker: EmbeddedBroker) -> bool:
    """Has anything reached the survey topic yet?"""
    consumer = AIOKafkaConsumer(SURVEY_RESPONSES, bootstrap_servers=broker.bootstrap,
                                auto_offset_reset="earliest", group_id=None)  # fmt: skip
    await consumer.start()
    try:
        return bool(await consumer.getmany(timeout_ms=1000))
    finally:
        await consumer.stop()


def test_ctrl_c_ends_an_endless_generator_quietly(
    fresh_broker: EmbeddedBroker,  # noqa: F811 - the fixture imported above
) -> None:
    asyncio.run(create_topics(fresh_broker.bootstrap, topic_specs(Settings())))
    env = {**os.environ, "CX_BROKER": fresh_broker.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "generate", "--realtime", "--rate", "50",
         "--count", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # a shell's background job (CI) starts with SIGINT ignored, and children inherit that;
        # a terminal's Ctrl-C finds the default, so Python raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    # SIGINT only once it produces: a Ctrl-C during start-up (imports) is another matter
    harness.wait_until(lambda: proc.poll() is not None or asyncio.run(_any(fresh_broker)), 60,
                       "the generator producing")  # fmt: skip
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert b"Traceback" not in err, err.decode(errors="replace")
