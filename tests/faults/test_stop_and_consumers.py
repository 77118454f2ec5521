"""Graceful stop with uncommitted work, a database missing at start-up, several consumers
on one queue, and the dead-letter queue."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from urllib.parse import urlsplit

import asyncpg
import pytest

from ingestor.demo.embedded import EmbeddedPostgres
from ingestor.demo.run import crash_after_commit
from ingestor.demo.synthetic import generate
from ingestor.observe.hooks import HookChain, Stats
from ingestor.pipeline.service import run_service
from ingestor.sink.queries import migrations
from ingestor.source.sqs import SqsQueue, create_queue, sqs_client
from tests.conftest import REGION, service_env
from tests.fakes import RecordingHooks
from tests.faults.conftest import check_invariant, fault_settings, record
from tests.faults.test_outages import hold_lock
from tests.integration.helpers import find_plaintext, plaintext_pii, queue_is_empty
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


async def visible(queue: SqsQueue) -> int:
    return (await queue.depths()).visible


async def test_sigterm_with_uncommitted_work_hands_it_back_at_once(
    database: str, fault_queue: SqsQueue, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    # Given a service that has received messages it cannot commit (a lock blocks writes),
    # with a visibility timeout far longer than the test
    sent = await fault_queue.send([e.body for e in generate(400, seed=41)])
    settings = fault_settings(
        database,
        fault_queue,
        sqs_endpoint,
        drain=False,
        visibility_timeout=600,
        shutdown_timeout=2,
        batch_size=50,
        receive_wait_seconds=1,
    )
    env = service_env(settings)
    env.update(
        INGESTOR_DRAIN="false",
        INGESTOR_VISIBILITY_TIMEOUT="600",
        INGESTOR_SHUTDOWN_TIMEOUT="2",
        INGESTOR_BATCH_SIZE="50",
        INGESTOR_RECEIVE_WAIT_SECONDS="1",
    )
    async with hold_lock(database):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingestor", "run", env=env, stderr=asyncio.subprocess.PIPE
        )
        await wait_until_held(fault_queue, len(sent))
        # When it gets SIGTERM
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        took = time.monotonic() - stopped_at
        # Then it exits 0 within the shutdown timeout (plus the hand-back)
        assert code == 0
        assert took < 2 + 5
        # And every message is visible again at once, not after the 600 s timeout
        assert await visible(fault_queue) == len(sent)
    assert process.stderr is not None
    assert b"handing" in await process.stderr.read()
    # And a later run loads them all
    rerun = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", "run", "--drain", env={**env, "INGESTOR_DRAIN": "true"}
    )
    assert await asyncio.wait_for(rerun.wait(), 60) == 0
    await check_invariant(db, fault_queue, sent)
    record(
        "SIGTERM with commits blocked (timeout 2s)",
        2,
        len(sent),
        f"visible again {took:.1f}s after SIGTERM",
    )


async def wait_until_held(queue: SqsQueue, count: int) -> None:
    """Until no message is visible: the service holds them all."""
    deadline = time.monotonic() + 30
    while await visible(queue) > 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert count > 0


async def test_a_database_down_at_start_up_is_waited_for(
    own_postgres: EmbeddedPostgres, fault_queue: SqsQueue, sqs_endpoint: str
) -> None:
    sent = await fault_queue.send([e.body for e in generate(300, seed=42)])
    await asyncio.to_thread(own_postgres.stop)
    stats, attempts = Stats(), RecordingHooks()
    settings = fault_settings(own_postgres.url, fault_queue, sqs_endpoint)
    task = asyncio.create_task(run_service(settings, asyncio.Event(), HookChain(stats, attempts)))
    # (it has tried several times, backing off, and is still waiting)
    await wait_until(lambda: attempts.events.count("retry startup") >= 3 or task.done(), 30)
    assert not task.done(), "the service gave up on a database that was only late"
    started = time.monotonic()
    await asyncio.to_thread(own_postgres.start)
    await asyncio.wait_for(task, 60)
    connection = await asyncpg.connect(own_postgres.url)
    try:
        await check_invariant(connection, fault_queue, sent)
    finally:
        await connection.close()
    record(
        "PostgreSQL down at start-up (3s)",
        1,
        len(sent),
        f"{time.monotonic() - started:.1f}s from its start to drained",
    )


async def test_three_consumers_with_redeliveries_on_one_queue(
    empty_database: str, fault_queue: SqsQueue, sqs_endpoint: str
) -> None:
    # Given 20,000 messages, 200 of them committed but not deleted by a dead consumer,
    # and an empty database that three consumers will migrate at the same moment
    bodies = [e.body for e in generate(20_000, seed=43)]
    sent = await fault_queue.send(bodies)
    settings = fault_settings(empty_database, fault_queue, sqs_endpoint, visibility_timeout=10)
    from ingestor.pipeline.assembly import run_migrations  # the dead consumer needs the tables

    await run_migrations(settings)
    connection = await asyncpg.connect(empty_database)
    await connection.execute("DROP TABLE user_logins, ingestor_rejects, ingestor_migrations")
    await connection.close()
    env = service_env(settings)
    env["INGESTOR_VISIBILITY_TIMEOUT"] = "10"
    started = time.monotonic()
    # When three processes drain it together (each migrating at start-up)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ingestor",
            "run",
            "--drain",
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    await wait_until(lambda: migrated(empty_database), 60)
    await crash_after_commit(settings, 200)
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in processes)), 300)
    assert [p.returncode for p in processes] == [0, 0, 0]
    # Then every message is in one place once, with no deadlock and no PII in the logs
    connection = await asyncpg.connect(empty_database)
    try:
        await check_invariant(connection, fault_queue, sent)
    finally:
        await connection.close()
    logs = b"".join(err for _, err in outputs).decode()
    assert "deadlock" not in logs.lower()
    assert [value for value in plaintext_pii(bodies) if value in logs] == []
    record(
        "3 consumers, 20,000 messages, 200 redelivered",
        3,
        len(sent),
        f"{time.monotonic() - started:.1f}s to drain",
    )


async def migrated(url: str) -> bool:
    """The consumers have migrated the empty database: every migration is recorded."""
    connection = await asyncpg.connect(url)
    try:
        if not await connection.fetchval("SELECT to_regclass('ingestor_migrations') IS NOT NULL"):
            return False
        done = await connection.fetchval("SELECT count(*) FROM ingestor_migrations")
    finally:
        await connection.close()
    return bool(done == len(migrations()))


async def test_messages_that_keep_failing_end_in_the_dlq_which_drains_like_a_queue(
    database: str, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    # Given a queue whose DLQ takes messages after 2 receives, and a database that refuses
    # every write for a transient reason (read-only)
    async with sqs_client(REGION, sqs_endpoint) as client:
        name = f"dlq-{uuid.uuid4().hex[:8]}"
        dlq_url = await create_queue(client, f"{name}-dlq")
        arn = (await client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "2"})
        url = await create_queue(client, name, {"VisibilityTimeout": "1", "RedrivePolicy": policy})
        queue, dlq = SqsQueue(client, url), SqsQueue(client, dlq_url)
        bodies = [e.body for e in generate(50, seed=44, junk_rate=0)]
        sent = await queue.send(bodies)
        dbname = urlsplit(database).path.lstrip("/")
        await db.execute(f"ALTER DATABASE \"{dbname}\" SET lock_timeout = '100ms'")
        # When the service keeps receiving them, cannot commit (55P03, a transient error),
        # and stops holding them after max_hold_seconds
        settings = fault_settings(
            database,
            queue,
            sqs_endpoint,
            drain=False,
            visibility_timeout=1,
            max_hold_seconds=0.5,
            receive_wait_seconds=1,
            shutdown_timeout=1,
        )
        stop = asyncio.Event()
        async with hold_lock(database):
            task = asyncio.create_task(run_service(settings, stop, Stats()))
            await wait_until(lambda: visible_and_held(dlq, len(sent)), 60)
            stop.set()
            await asyncio.wait_for(task, 30)
        # Then they all end in the DLQ, and the main queue is empty
        await db.execute(f'ALTER DATABASE "{dbname}" RESET lock_timeout')
        assert await queue_is_empty(queue)
        # And `run --drain` on the DLQ loads them, once each
        env = service_env(fault_settings(database, dlq, sqs_endpoint))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingestor", "run", "--drain", env=env
        )
        assert await asyncio.wait_for(process.wait(), 60) == 0
        await check_invariant(db, dlq, sent)
        assert await find_plaintext(db, plaintext_pii(bodies)) == []
    record("transient failures past maxReceiveCount -> DLQ", 3, len(sent), "drained from the DLQ")


async def visible_and_held(queue: SqsQueue, count: int) -> bool:
    attributes = await queue._client.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    counts = attributes["Attributes"]
    return (
        int(counts["ApproximateNumberOfMessages"])
        + int(counts["ApproximateNumberOfMessagesNotVisible"])
        >= count
    )
