"""The worker caps glibc's malloc arenas (streams/cli.py, ``limit_malloc_arenas``): threads that
allocate then share two arenas instead of getting one each. Checked in a subprocess with
glibc's own ``malloc_stats()``, which lists every arena."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from tests.integration.harness import ROOT

PROGRAM = """
import ctypes, os, sys, threading
from streams.cli import limit_malloc_arenas
applied = limit_malloc_arenas() if sys.argv[1] == "limit" else None
barrier = threading.Barrier(8)
def work():
    blocks = [bytearray(200_000) for _ in range(20)]  # malloc, not pymalloc
    barrier.wait()  # all alive at once: each thread needs an arena at the same time
    del blocks
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
sys.stderr.flush()
ctypes.CDLL(None).malloc_stats()
print("applied", applied, flush=True)
"""


def _arenas(mode: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], cwd=ROOT, env=env, capture_output=True,
        text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stderr.count("Arena "), out.stdout.strip()


def test_the_worker_caps_malloc_arenas() -> None:
    if not hasattr(ctypes.CDLL(None), "malloc_stats"):
        pytest.skip("not glibc")
    free, _ = _arenas("none")
    capped, applied = _arenas("limit")
    assert applied == "applied True"
    assert free > 2, f"8 allocating threads made only {free} arenas without the cap"
    assert capped <= 2, f"{capped} arenas with the cap"


def test_an_operators_malloc_arena_max_wins() -> None:
    _, applied = _arenas("limit", {**os.environ, "MALLOC_ARENA_MAX": "4"})
    assert applied == "applied False"
