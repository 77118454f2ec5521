"""Rule 5 under crashes: SIGKILL at chosen and at random points, restart, nothing lost or
doubled."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time

import asyncpg
import pytest

from ingestor.demo.synthetic import generate
from ingestor.source.sqs import SqsQueue
from tests.conftest import service_env
from tests.faults.conftest import (
    SettingsFactory,
    check_invariant,
    fault_settings,
    record,
)

pytestmark = pytest.mark.faults
VERBOSE = False  # True shows the subprocesses' logs


async def run_cli(env: dict[str, str], *args: str, kill_after: float | None = None) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None if VERBOSE else asyncio.subprocess.DEVNULL,
    )
    if kill_after is None:
        return await asyncio.wait_for(process.wait(), 120)
    try:
        return await asyncio.wait_for(process.wait(), kill_after)
    except TimeoutError:
        process.send_signal(signal.SIGKILL)
        return await process.wait()


async def test_sigkill_at_every_point_then_restart_loses_and_doubles_nothing(
    database: str, fault_queue: SqsQueue, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    # Given 2,000 messages, some junk, and consumers that keep dying
    events = generate(2000, seed=21, junk_rate=0.05)
    sent = await fault_queue.send([e.body for e in events])
    env = service_env(fault_settings(database, fault_queue, sqs_endpoint))
    env["INGESTOR_VISIBILITY_TIMEOUT"] = "3"
    env["INGESTOR_BATCH_SIZE"] = "50"
    runs = 0
    # When the process is killed after receiving, inside the COPY, and between commit and
    # delete, each more than once
    for point, after in [("receive", 3), ("copy", 1), ("commit", 1), ("commit", 4), ("copy", 3)]:
        code = await run_cli(env, "-m", "tests.faults.crashing_run", point, str(after))
        runs += 1
        assert code == -signal.SIGKILL, f"the {point} crash did not happen"
    # And the real CLI is killed at random moments
    rng = random.Random(4)
    for _ in range(4):
        await run_cli(env, "-m", "ingestor", "run", "--drain", kill_after=rng.uniform(0.5, 2.5))
        runs += 1
    # And then runs to the end: a drain waits for what the dead consumers held (their
    # visibility timeout) and exits 0 only once the queue is empty
    started = time.monotonic()
    assert await run_cli(env, "-m", "ingestor", "run", "--drain") == 0
    runs += 1
    # Then every message is in exactly one place and the queue is empty
    await check_invariant(db, fault_queue, sent)
    record(
        "SIGKILL: receive/COPY/commit-delete/random",
        runs,
        len(sent),
        f"{time.monotonic() - started:.1f}s to drain after the last kill",
    )


_ = SettingsFactory
