"""Rule 7: database and queue outages, and slow flushes. The service rides them out
without a restart, without unbounded buffering, and without redeliveries while its
heartbeat runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

import aiohttp
import asyncpg
import pytest

from ingestor.demo.embedded import EmbeddedPostgres, EmbeddedSqs, free_port
from ingestor.demo.synthetic import generate
from ingestor.models import Rejection, WriteResult
from ingestor.observe.hooks import HookChain, LogHooks, Stats
from ingestor.pipeline.service import run_service
from ingestor.ports import Hooks
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue, create_queue, sqs_client
from tests.conftest import REGION
from tests.endpoints import Endpoints
from tests.faults.conftest import (
    check_invariant,
    fault_settings,
    record,
    wait_for_queue_empty,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.faults
OUTAGE_SECONDS = 30


class CommitClock(Hooks):
    """Remembers when batches committed."""

    def __init__(self) -> None:
        self.commits: list[float] = []

    def on_written(
        self, result: WriteResult, rejections: Sequence[Rejection], seconds: float
    ) -> None:
        self.commits.append(time.monotonic())

    def first_after(self, moment: float) -> float:
        return next(t for t in self.commits if t >= moment) - moment


@contextlib.asynccontextmanager
async def hold_lock(database: str) -> AsyncIterator[None]:
    """Block every write to user_logins while inside (a slow flush, seen from ingestor)."""
    blocker = await asyncpg.connect(database)
    try:
        async with blocker.transaction():
            # EXCLUSIVE blocks writes but not reads, so the service can still start.
            await blocker.execute("LOCK TABLE user_logins IN EXCLUSIVE MODE")
            yield
    finally:
        await blocker.close()


def start(settings: Settings, *hooks: Hooks) -> tuple[asyncio.Task[None], Stats, asyncio.Event]:
    stats, stop = Stats(), asyncio.Event()
    task = asyncio.create_task(run_service(settings, stop, HookChain(LogHooks(), stats, *hooks)))
    return task, stats, stop


async def test_postgres_stopped_for_30_seconds(
    own_postgres: EmbeddedPostgres,
    fault_queue: SqsQueue,
    sqs_endpoint: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ingestor")
    sent = await fault_queue.send([e.body for e in generate(3000, seed=31)])
    settings = fault_settings(
        own_postgres.url,
        fault_queue,
        sqs_endpoint,
        buffer_messages=400,
        batch_size=100,
        metrics_port=free_port(),
    )
    clock = CommitClock()
    task, stats, _ = start(settings, clock)
    await wait_until(lambda: stats.inserted >= 300, 30)
    # When PostgreSQL stops for 30 s mid-run
    await asyncio.to_thread(own_postgres.stop)
    outage_started = time.monotonic()
    # (the buffers fill, as the metrics show them: a slow machine's receives and flushes
    # may be partial, so what they hold then is not a fixed number of messages)
    async with aiohttp.ClientSession() as session:
        await wait_until(Endpoints(session, settings.metrics_port).buffers_full, 60)
    received_early = stats.received
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
    # Then receiving stopped once the bounded buffers were full
    in_hands = settings.receivers * 10  # each receiver may hold one receive's messages
    assert stats.received - received_early <= in_hands + 20
    bound = settings.buffer_messages + settings.writers * settings.batch_size + in_hands
    assert stats.received - stats.loaded - stats.rejected <= bound + 20
    # And the heartbeat kept what it holds from being redelivered (visibility is 3 s)
    assert stats.extended > 0
    restarted = time.monotonic()
    await asyncio.to_thread(own_postgres.start)
    # And it recovers without a restart and drains the queue
    await asyncio.wait_for(task, 90)
    connection = await asyncpg.connect(own_postgres.url)
    try:
        await check_invariant(connection, fault_queue, sent)
    finally:
        await connection.close()
    # No message was received twice: the heartbeat kept all it held. (Rows may still be
    # replaced: a commit cut by the stop has an unknown outcome, and its batch is merged
    # again once PostgreSQL is back.)
    assert stats.received == len(sent), "a held message was redelivered during the outage"
    outage_logs = [r for r in caplog.records if getattr(r, "event", "") == "outage_start"]
    assert [r.stage for r in outage_logs] == ["write"]  # type: ignore[attr-defined]
    record(
        f"PostgreSQL stopped {OUTAGE_SECONDS}s mid-run",
        1,
        len(sent),
        f"{clock.first_after(restarted):.1f}s from restart to first commit",
    )


async def test_connections_killed_with_pg_terminate_backend(
    database: str, fault_queue: SqsQueue, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    sent = await fault_queue.send([e.body for e in generate(3000, seed=32)])
    task, _, _ = start(fault_settings(database, fault_queue, sqs_endpoint, batch_size=100))
    killed = 0
    while not task.done():  # kill the service's connections over and over while it runs
        killed += await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'ingestor' AND pid <> pg_backend_pid()"
        )
        await asyncio.sleep(0.3)
    await task
    assert killed > 0
    await check_invariant(db, fault_queue, sent)
    record(
        f"pg_terminate_backend x{killed} during the run",
        1,
        len(sent),
        "next retry (backoff from 0.2s)",
    )


async def test_sqs_server_stopped_and_restarted(
    database: str, own_sqs: EmbeddedSqs, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingestor")
    async with sqs_client(REGION, own_sqs.endpoint) as client:
        url = await create_queue(client, "outage", {"VisibilityTimeout": "3"})
        queue = SqsQueue(client, url)
        sent = await queue.send([e.body for e in generate(3000, seed=33)])
    settings = fault_settings(database, queue, own_sqs.endpoint, batch_size=100)
    clock = CommitClock()
    task, stats, _ = start(settings, clock)
    await wait_until(lambda: stats.inserted >= 300, 30)
    # When the SQS server stops for 10 s and comes back (with its state)
    await asyncio.to_thread(own_sqs.stop)
    await asyncio.sleep(10)
    restarted = time.monotonic()
    await asyncio.to_thread(own_sqs.start)
    # Then the service recovers by itself; one log line when the outage starts, one at its end
    await asyncio.wait_for(task, 120)
    async with sqs_client(REGION, own_sqs.endpoint) as client:
        await check_invariant(db, SqsQueue(client, url), sent)
    starts = [r.stage for r in caplog.records if getattr(r, "event", "") == "outage_start"]  # type: ignore[attr-defined]
    ends = [r.stage for r in caplog.records if getattr(r, "event", "") == "outage_end"]  # type: ignore[attr-defined]
    assert "receive" in starts
    assert sorted(starts) == sorted(set(starts))  # once per stage, not once per attempt
    assert set(ends) >= {"receive"}
    record(
        "SQS server stopped 10s and restarted",
        1,
        len(sent),
        f"{clock.first_after(restarted):.1f}s from restart to next commit",
    )


async def test_a_flush_slower_than_the_visibility_timeout_is_not_redelivered(
    database: str, fault_queue: SqsQueue, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    # Given a running service, and then a lock that blocks every write for 3x the
    # visibility timeout
    sent = await fault_queue.send([e.body for e in generate(1500, seed=34)])
    task, stats, _ = start(fault_settings(database, fault_queue, sqs_endpoint, batch_size=50))
    await wait_until(lambda: stats.inserted >= 50, 30)
    async with hold_lock(database):
        await asyncio.sleep(9)
    await asyncio.wait_for(task, 60)
    # Then the heartbeat kept every held message invisible: nothing was received twice
    assert stats.extended > 0
    assert stats.received == len(sent)
    assert stats.replaced == 0
    await check_invariant(db, fault_queue, sent)
    record("flush blocked 9s, visibility 3s", 1, len(sent), "no redelivery (heartbeat)")


async def test_when_the_heartbeat_cannot_help_the_upsert_still_leaves_one_row(
    database: str, fault_queue: SqsQueue, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    # Given two consumers whose heartbeats give up at once (max hold 0.5 s) and a lock that
    # blocks writes longer than the visibility timeout
    sent = await fault_queue.send([e.body for e in generate(1500, seed=35)])
    settings = fault_settings(
        database,
        fault_queue,
        sqs_endpoint,
        max_hold_seconds=0.5,
        batch_size=50,
        drain=False,
        receive_wait_seconds=1,
    )
    first, first_stats, stop_first = start(settings)
    second, second_stats, stop_second = start(settings)
    await wait_until(lambda: first_stats.inserted + second_stats.inserted >= 50, 30)
    async with hold_lock(database):
        # held messages come back and are received again, by either consumer
        await wait_until(lambda: first_stats.received + second_stats.received > len(sent) + 50, 60)
    await wait_for_queue_empty(fault_queue, 60)
    stop_first.set()
    stop_second.set()
    await asyncio.wait_for(asyncio.gather(first, second), 30)
    # Then messages were received more than once, and each is still one row
    assert first_stats.received + second_stats.received > len(sent)
    await check_invariant(db, fault_queue, sent)
    record("heartbeat given up: redelivered during flush", 2, len(sent), "upsert by message_id")
