"""The start and the end of a batch run, of the real command line: `python -m ingestor
run --drain` against fauxqs and the embedded PostgreSQL, on an empty queue.

- Start-up: from just before the process is spawned to the first ReceiveMessage on the
  wire. The command's SQS endpoint is a pass-through proxy (`delay_proxy.DelayProxy`,
  no delay, in this process) that notes when `AmazonSQS.ReceiveMessage` first goes
  upstream, so the command runs untouched: interpreter start, imports, settings, the
  metrics and health server (on, as by default, on a free port), the migrations check,
  the masking-key claim, the queue's attributes, the pool, the first receive. The proxy
  adds one loopback hop to the few calls made before it (well under a millisecond each).
- End of a drain: the command's wall time (spawn to exit) less the drain wait setting
  (the empty long poll a drain of an empty queue must wait out).

Both with ingestor's modules compiled to bytecode first, as an installed service has
them (pip compiles a package as it installs it; the image is built so): a checkout run
with PYTHONDONTWRITEBYTECODE set would otherwise compile some 40 modules at every start.

And `python -X importtime -m ingestor --help` (and the same for what `run` imports
before its first receive: the command line and the service's module): the imports with
the largest cumulative time, to see what start-up pays for.
"""

from __future__ import annotations

import asyncio
import compileall
import re
import sys
import time
import uuid
from typing import Any

from benchmarks.delay_proxy import DelayProxy
from benchmarks.e2e import ROOT, ingestor_env
from ingestor.demo.embedded import free_port
from ingestor.source.sqs import create_queue, sqs_client

RECEIVE = b"AmazonSQS.ReceiveMessage"


def compile_bytecode() -> None:
    """ingestor's modules compiled, as pip compiles an installed package's."""
    if not compileall.compile_dir(str(ROOT / "ingestor"), quiet=1):
        raise RuntimeError(f"{ROOT / 'ingestor'} did not compile")


async def empty_queue(endpoint: str) -> str:
    async with sqs_client("us-east-1", endpoint, max_connections=1) as client:
        return await create_queue(
            client, f"empty-{uuid.uuid4().hex[:10]}", {"VisibilityTimeout": "120"}
        )


async def batch_run(endpoint: str, dsn: str) -> dict[str, Any]:
    """One `run --drain` of an empty queue: start-up and wall time, in seconds."""
    url = await empty_queue(endpoint)
    proxy = DelayProxy(endpoint.removeprefix("http://"), 0.0, watch=[RECEIVE])
    port = await proxy.start()
    env = ingestor_env(f"http://127.0.0.1:{port}", url, dsn, metrics_port=str(free_port()))
    drain_wait = float(env["INGESTOR_DRAIN_WAIT_SECONDS"])
    try:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ingestor",
            "run",
            "--drain",
            env=env,
            cwd=str(ROOT),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        ended = time.monotonic()
    finally:
        await proxy.close()
    if process.returncode != 0 or RECEIVE not in proxy.first_seen:
        raise RuntimeError(f"run --drain exited {process.returncode}: {err.decode()[-2000:]}")
    return {
        "startup_seconds": proxy.first_seen[RECEIVE] - started,
        "wall_seconds": ended - started,
        "drain_wait_seconds": drain_wait,
        "over_drain_wait_seconds": ended - started - drain_wait,
        # From the first receive to the exit, less the drain wait: the drain's end itself.
        "end_seconds": ended - proxy.first_seen[RECEIVE] - drain_wait,
    }


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


HELP = ("-m", "ingestor", "--help")
# What `run` imports before it receives, its metrics server on (the rest are inside these).
RUN = ("-c", "import ingestor.cli.main, ingestor.pipeline.service, ingestor.observe.http")


async def import_times(arguments: tuple[str, ...], top: int = 10) -> dict[str, Any]:
    """The `top` imports by cumulative time of `python -X importtime ARGUMENTS` (nested
    ones included: the chain shows where the time goes), and the total."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", *arguments, cwd=str(ROOT),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    rows = [
        {"module": m.group(4), "cumulative_ms": int(m.group(2)) / 1000,
         "depth": (len(m.group(3)) - 1) // 2}
        for m in map(_IMPORT_LINE.match, err.decode().splitlines()) if m
    ]  # fmt: skip
    total = sum(row["cumulative_ms"] for row in rows if row["depth"] == 0)
    rows.sort(key=lambda row: -row["cumulative_ms"])
    return {"command": " ".join(arguments), "total_ms": total, "top": rows[:top]}
