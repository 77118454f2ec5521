"""End to end against an SQS-speaking HTTP server on loopback: ingestor next to the bare
SQS client loop and the seed approach; latency at a fixed load; peak memory by queue
depth; one and two processes on one queue. Every process-level figure comes from a
process of its own, so CPU and memory are that process's alone."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.wire import send_all
from ingestor.demo.synthetic import generate
from ingestor.sink.schema import migrate
from ingestor.source.sqs import SqsQueue, create_queue, sqs_client

ROOT = Path(__file__).resolve().parents[1]
SEED_PYTHON = ROOT / "benchmarks" / ".tools" / "venv-seed" / "bin" / "python"
KEY = "benchmark-key-0123456789abcdef0123456789"


async def fill_queue(endpoint: str, count: int, seed: int = 7) -> str:
    """A new queue holding `count` synthetic events (5% junk); returns its URL."""
    bodies = [e.body for e in generate(count, seed=seed)]
    async with sqs_client("us-east-1", endpoint, max_connections=1) as client:
        url = await create_queue(
            client, f"bench-{uuid.uuid4().hex[:10]}", {"VisibilityTimeout": "120"}
        )
    await send_all(endpoint, url, bodies)
    return url


async def fresh_tables(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
        await connection.execute("TRUNCATE user_logins, ingestor_rejects")
    finally:
        await connection.close()


async def table_counts(dsn: str) -> tuple[int, int, int]:
    connection = await asyncpg.connect(dsn)
    try:
        return (
            await connection.fetchval("SELECT count(*) FROM user_logins"),
            await connection.fetchval("SELECT count(DISTINCT message_id) FROM user_logins"),
            await connection.fetchval("SELECT count(*) FROM ingestor_rejects"),
        )
    finally:
        await connection.close()


def ingestor_env(endpoint: str, url: str, dsn: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTOR_")}
    env.update(
        INGESTOR_QUEUE_URL=url,
        INGESTOR_DATABASE_URL=dsn,
        INGESTOR_HMAC_KEY=KEY,
        INGESTOR_SQS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID=env.get("AWS_ACCESS_KEY_ID", "bench"),
        AWS_SECRET_ACCESS_KEY=env.get("AWS_SECRET_ACCESS_KEY", "bench"),
        INGESTOR_LOG_LEVEL="WARNING",
        INGESTOR_DRAIN_WAIT_SECONDS="2",
        INGESTOR_METRICS_PORT="0",  # several consumers run at once: none takes a port
        PYTHONPATH=str(ROOT),
    )
    env.update({f"INGESTOR_{k.upper()}": v for k, v in settings.items()})
    return env


async def run_json(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, cwd=str(ROOT)
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command[1:3]} exited {process.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def ingestor_run(
    endpoint: str, dsn: str, count: int, lags: bool = False, **settings: str
) -> dict[str, Any]:
    url = await fill_queue(endpoint, count)
    await fresh_tables(dsn)
    command = [sys.executable, "-m", "benchmarks.run_ingestor", *(["--lags"] if lags else [])]
    result = await run_json(command, ingestor_env(endpoint, url, dsn, **settings))
    rows, distinct, rejects = await table_counts(dsn)
    assert rows == distinct, "doubled"
    assert rows + rejects == count, "lost"
    return result


async def bare_run(endpoint: str, count: int, receivers: int) -> dict[str, Any]:
    url = await fill_queue(endpoint, count)
    # On uvloop, as the service and the floor run.
    code = (
        "import json; from benchmarks.baselines import bare_sqs; "
        "from ingestor.cli.runtime import run_async; "
        f"print(json.dumps(run_async(bare_sqs({endpoint!r}, {url!r}, {receivers}, {count}))))"
    )
    return await run_json([sys.executable, "-c", code], ingestor_env(endpoint, url, ""))


async def floor_run(endpoint: str, count: int, receivers: int) -> dict[str, Any]:
    """The floor consumer (floor.py) on a queue of `count`, with the service's long poll."""
    url = await fill_queue(endpoint, count)
    wait = ingestor_env(endpoint, url, "")["INGESTOR_DRAIN_WAIT_SECONDS"]
    command = [sys.executable, "-m", "benchmarks.floor", endpoint, url, str(receivers), str(count)]
    return await run_json([*command, wait], ingestor_env(endpoint, url, ""))


async def seed_run(endpoint: str, dsn: str, count: int) -> dict[str, Any]:
    url = await fill_queue(endpoint, count)
    command = [str(SEED_PYTHON), "benchmarks/baselines.py", "seed", endpoint, url, dsn, str(count)]
    return await run_json(command, ingestor_env(endpoint, url, dsn))


async def latency_run(
    endpoint: str, dsn: str, rate: int, seconds: float, **settings: str
) -> dict[str, Any]:
    """Offer `rate` messages/s for `seconds` while ingestor runs; lag = commit - SentTimestamp."""
    async with sqs_client("us-east-1", endpoint) as client:
        url = await create_queue(
            client, f"lat-{uuid.uuid4().hex[:10]}", {"VisibilityTimeout": "120"}
        )
        queue = SqsQueue(client, url)
        await fresh_tables(dsn)
        command = [sys.executable, "-m", "benchmarks.run_ingestor", "--lags"]
        env = ingestor_env(endpoint, url, dsn, drain_wait_seconds="5", **settings)
        consumer = asyncio.create_task(run_json(command, env))
        bodies = [e.body for e in generate(int(rate * seconds), seed=3)]
        tick = 0.05
        per_tick = max(1, int(rate * tick))
        started = time.perf_counter()
        for i in range(0, len(bodies), per_tick):
            await queue.send(bodies[i : i + per_tick])
            delay = started + (i + per_tick) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        result = await consumer
    lags = result.pop("lags_ms")
    return {
        "offered": rate,
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "messages": len(lags),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


async def scale_out_run(endpoint: str, dsn: str, count: int, processes: int) -> dict[str, Any]:
    url = await fill_queue(endpoint, count)
    await fresh_tables(dsn)
    env = ingestor_env(endpoint, url, dsn)
    command = [sys.executable, "-m", "benchmarks.run_ingestor"]
    results = await asyncio.gather(*(run_json(command, env) for _ in range(processes)))
    rows, distinct, rejects = await table_counts(dsn)
    # A copy may receive nothing (the others emptied a small queue before it started):
    # the run spans the copies that worked.
    working = [r for r in results if r["started_at"] is not None]
    elapsed = max(r["ended_at"] for r in working) - min(r["started_at"] for r in working)
    return {
        "processes": processes,
        "working": len(working),
        "rate": count / elapsed,
        "messages": count,
        "lost": count - rows - rejects,
        "doubled": rows - distinct,
    }
