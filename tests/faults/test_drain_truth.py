"""`run --drain` tells a scheduler the truth (PRODUCT.md section 5): exit 0 only once the
queue shows no visible and no in-flight message and everything received is committed and
deleted; messages a crashed consumer holds are waited for and loaded; stopped by a signal,
or with messages still held elsewhere after the wait: exit 3, saying how many remain.
And the queue's own visibility timeout is the one in force unless the operator sets one."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
import pytest_asyncio

from ingestor.demo.embedded import EmbeddedPostgres
from ingestor.demo.synthetic import generate
from ingestor.sink.schema import migrate
from ingestor.source.sqs import SqsQueue, create_queue
from tests.cli import drain
from tests.conftest import service_env, temporary_queue
from tests.faultproxy import FaultProxy
from tests.faults.conftest import check_invariant, fault_settings, record
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


async def hold(queue: SqsQueue, count: int) -> list[str]:
    """Receive `count` messages and keep them, as a consumer that then died would."""
    handles: list[str] = []
    while len(handles) < count:
        response = await queue._client.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        handles += [m["ReceiptHandle"] for m in response.get("Messages", [])]
    return handles


async def test_messages_a_killed_consumer_holds_are_waited_for_and_loaded(
    database: str, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    # Given 2,000 messages, 300 of them held by a consumer that died (visibility 5 s)
    async with temporary_queue(sqs_endpoint, "held", visibility=5) as queue:
        sent = await queue.send([e.body for e in generate(2_000, seed=71)])
        await hold(queue, 300)
        # When `run --drain` runs
        code, logs = await drain(service_env(fault_settings(database, queue, sqs_endpoint)))
        # Then it waits for them (the queue's 5 s, not 120 s), loads them, and exits 0
        assert code == 0, logs[-2_000:]
        await check_invariant(db, queue, sent)
    record("drain: 300 held by a dead consumer", 1, len(sent), "loaded after their timeout")


async def test_a_fifo_group_locked_by_the_drains_own_messages_is_drained(
    database: str, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    # Given a FIFO queue whose 600 messages are all in one message group
    async with temporary_queue(sqs_endpoint, "group", visibility=30) as plain:
        client = plain._client
        url = await create_queue(
            client,
            f"{plain.url.rsplit('/', 1)[1]}.fifo",
            {"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "30"},
        )
        fifo = SqsQueue(client, url)
        bodies = [e.body for e in generate(600, seed=72, repeat_rate=0)]
        sent = await send_in_one_group(fifo, bodies)
        try:
            # When `run --drain` runs (its own uncommitted messages lock the group, so
            # some receives come back empty while messages remain)
            env = service_env(fault_settings(database, fifo, sqs_endpoint))
            env["INGESTOR_BATCH_SIZE"] = "50"
            code, logs = await drain(env)
            # Then it exits 0 only with all 600 loaded and the queue empty
            assert code == 0, logs[-2_000:]
            await check_invariant(db, fifo, sent)
        finally:
            await client.delete_queue(QueueUrl=url)
    record("drain: FIFO, one message group", 1, len(sent), "no early exit")


async def send_in_one_group(queue: SqsQueue, bodies: list[str]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body, "MessageGroupId": "one"}
            for i, body in enumerate(bodies[start : start + 10])
        ]
        response = await queue._client.send_message_batch(QueueUrl=queue.url, Entries=entries)
        ids += [entry["MessageId"] for entry in response["Successful"]]
    return ids


async def test_sigterm_while_the_database_is_down_exits_3_saying_what_remains(
    own_postgres: EmbeddedPostgres, fault_queue: SqsQueue, sqs_endpoint: str
) -> None:
    # Given a drain that received messages it could not commit (writes blocked), and
    # then lost its database
    sent = await fault_queue.send([e.body for e in generate(500, seed=73)])
    connection = await asyncpg.connect(own_postgres.url)
    await migrate(connection)
    await connection.close()
    env = service_env(fault_settings(own_postgres.url, fault_queue, sqs_endpoint))
    env.update(INGESTOR_SHUTDOWN_TIMEOUT="3", INGESTOR_LOG_LEVEL="WARNING")
    blocker = await asyncpg.connect(own_postgres.url)
    await blocker.execute("BEGIN; LOCK TABLE user_logins IN EXCLUSIVE MODE")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", "run", "--drain", env=env, stderr=asyncio.subprocess.PIPE
    )
    await wait_for_received(fault_queue)
    await asyncio.to_thread(own_postgres.stop)  # the lock's connection goes with it
    blocker.terminate()
    # When a scheduler stops it (SIGTERM)
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    # Then it exits 3 ("run again") with one line saying how many messages remain
    lines = [line for line in stderr.decode().splitlines() if "drain incomplete" in line]
    assert process.returncode == 3, stderr.decode()[-2_000:]
    assert len(lines) == 1, stderr.decode()[-2_000:]
    assert f"{len(sent)} messages remain" in lines[0]
    await asyncio.to_thread(own_postgres.start)


async def wait_for_received(queue: SqsQueue, within: float = 30) -> None:
    """Until the service holds messages (some are in flight)."""

    async def held() -> bool:
        return (await queue.depths()).in_flight > 0

    await wait_until(held, within, "the service to receive")


@contextlib.asynccontextmanager
async def keep_holding(queue: SqsQueue, handles: list[str]) -> AsyncIterator[None]:
    """A live consumer that keeps its messages invisible (a heartbeat) while inside."""

    async def beat() -> None:
        while True:
            for start in range(0, len(handles), 10):
                entries = [
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 3}
                    for i, h in enumerate(handles[start : start + 10])
                ]
                await queue._client.change_message_visibility_batch(
                    QueueUrl=queue.url, Entries=entries
                )
            await asyncio.sleep(1)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_messages_held_elsewhere_past_the_wait_end_the_drain_with_exit_3(
    database: str, fault_queue: SqsQueue, sqs_endpoint: str
) -> None:
    # Given 100 messages, 40 of them held by a live consumer that keeps extending them
    await fault_queue.send([e.body for e in generate(100, seed=74)])
    handles = await hold(fault_queue, 40)
    async with keep_holding(fault_queue, handles):
        # When `run --drain` runs (visibility timeout 3 s)
        code, logs = await drain(service_env(fault_settings(database, fault_queue, sqs_endpoint)))
    # Then it loads what it can, waits past their timeout, and exits 3 saying so
    assert code == 3, logs[-2_000:]
    line = next(x for x in logs.splitlines() if "drain incomplete" in x)
    assert "still held by another consumer" in line
    assert f"{len(handles)} messages" in line


@pytest_asyncio.fixture
async def proxy(sqs_endpoint: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(sqs_endpoint).running() as running:
        yield running


async def test_an_empty_queue_costs_one_look_at_its_counts(
    database: str, fault_queue: SqsQueue, proxy: FaultProxy
) -> None:
    env = service_env(fault_settings(database, fault_queue, proxy.url))
    code, logs = await drain(env)
    assert code == 0, logs[-2_000:]
    # One GetQueueAttributes at start-up (the queue answers; its visibility timeout) and
    # one at the end: nothing held here or elsewhere, so no waiting
    assert proxy.calls["GetQueueAttributes"] == 2
    assert proxy.calls["ReceiveMessage"] <= 16


async def test_the_queues_own_visibility_timeout_is_used_unless_one_is_set(
    database: str, sqs_endpoint: str, proxy: FaultProxy
) -> None:
    async with temporary_queue(sqs_endpoint, "vt", visibility=7) as queue:
        await queue.send([e.body for e in generate(50, seed=75)])
        seen: list[dict[str, object]] = []
        proxy.on_request = lambda target, body: seen.append(
            {"target": target, **orjson.loads(body)}
        )
        env = service_env(fault_settings(database, queue, proxy.url))
        code, logs = await drain(env)
        assert code == 0, logs[-2_000:]
        receives = [call for call in seen if call["target"] == "ReceiveMessage"]
        # Unset: no VisibilityTimeout on any receive; the queue's 7 s is in force
        assert receives
        assert all("VisibilityTimeout" not in call for call in receives)
        assert "visibility timeout 7 s (the queue's own)" in logs
        # Set: sent on every receive
        seen.clear()
        await queue.send([e.body for e in generate(20, seed=76)])
        code, logs = await drain({**env, "INGESTOR_VISIBILITY_TIMEOUT": "45"})
        assert code == 0, logs[-2_000:]
        receives = [call for call in seen if call["target"] == "ReceiveMessage"]
        assert receives
        assert all(call.get("VisibilityTimeout") == 45 for call in receives)


async def test_check_prints_the_visibility_timeout_in_force_and_its_source(
    database: str, sqs_endpoint: str
) -> None:
    async with temporary_queue(sqs_endpoint, "vtcheck", visibility=11) as queue:
        env = service_env(fault_settings(database, queue, sqs_endpoint))
        for extra, expected in [
            ({}, "visibility timeout 11 s (the queue's own VisibilityTimeout)"),
            (
                {"INGESTOR_VISIBILITY_TIMEOUT": "60"},
                "visibility timeout 60 s (from INGESTOR_VISIBILITY_TIMEOUT)",
            ),
        ]:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ingestor", "check", env={**env, **extra},
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(process.communicate(), 60)
            assert expected in out.decode(), out.decode()
