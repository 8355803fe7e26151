"""``cxpulse generate --count 0`` (the demo's live generator) stops on Ctrl-C without a
traceback on the terminal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.settings import Settings
from streams.topics import create_topics, topic_specs
from tests.integration.faults import fresh_broker  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_ctrl_c_ends_an_endless_generator_quietly(
    fresh_broker: EmbeddedBroker,  # noqa: F811 - the fixture imported above
) -> None:
    asyncio.run(create_topics(fresh_broker.bootstrap, topic_specs(Settings())))
    env = {**os.environ, "CX_BROKER": fresh_broker.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "generate", "--realtime", "--rate", "50",
         "--count", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(4.0)  # producing by now
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert b"Traceback" not in err, err.decode(errors="replace")
