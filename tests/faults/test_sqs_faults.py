"""The SQS path under the answers real AWS deployments get, through a fault-injecting proxy
between the real service (the CLI, as a scheduler runs it) and the SQS server: HTTP 500
bursts, bodies cut short, 429 with an HTML body, added latency, batch deletes that partly
fail, a stop while long polls are answered, and a queue deleted under the service. Each
ends with the usual invariant: every message once in user_logins or the rejects, the
queue empty."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from ingestor.demo.synthetic import generate
from ingestor.source.sqs import SqsQueue
from tests.cli import drain
from tests.conftest import service_env
from tests.faultproxy import HTML_429, HTML_503, Fault, FaultProxy
from tests.faults.conftest import check_invariant, fault_settings, record
from tests.waiting import wait_until

pytestmark = pytest.mark.faults
EVERY_CALL: frozenset[str] = frozenset()
DELETES = frozenset({"DeleteMessageBatch"})
RECEIVES = frozenset({"ReceiveMessage"})


@pytest_asyncio.fixture
async def proxy(sqs_endpoint: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(sqs_endpoint).running() as running:
        yield running


def proxied_env(database: str, queue: SqsQueue, proxy: FaultProxy, **extra: str) -> dict[str, str]:
    env = service_env(fault_settings(database, queue, proxy.url))
    env.update(INGESTOR_BATCH_SIZE="200", **extra)
    return env


def clean(logs: str) -> None:
    """Nothing an operator would read as a crash."""
    assert "Traceback" not in logs
    assert "Task exception was never retrieved" not in logs


async def drain_through(
    fault: Fault, messages: int, seed: int, database: str, queue: SqsQueue, proxy: FaultProxy
) -> list[str]:
    """Send `messages`, break SQS's answers with `fault`, and `run --drain` through it:
    it exits 0, with nothing an operator would read as a crash, and the fault happened."""
    sent = await queue.send([e.body for e in generate(messages, seed=seed)])
    proxy.inject(fault)
    code, logs = await drain(proxied_env(database, queue, proxy))
    assert sum(proxy.done.values()) > 0, "the fault never happened"
    assert code == 0, logs[-2_000:]
    clean(logs)
    return sent


BROKEN_ANSWERS = {
    "30% of answers cut short, no Content-Length": Fault("cut", rate=0.3),
    "30% HTTP 429 with an HTML body": Fault(
        "status", rate=0.3, status=429, body=HTML_429, content_type="text/html"
    ),
    "30% HTTP 503 with an HTML body": Fault(
        "status", rate=0.3, status=503, body=HTML_503, content_type="text/html"
    ),
    "30% RequestTimeout": Fault(
        "status",
        rate=0.3,
        status=400,
        body=b'{"__type": "RequestTimeout", "message": "Your socket connection timed out"}',
    ),
    "30% JSON ThrottlingException": Fault(
        "status", rate=0.3, status=400, body=b'{"__type": "com.amazon.coral#ThrottlingException"}'
    ),
    "50% of answers 0.2 s late": Fault("delay", rate=0.5, delay=0.2),
}


@pytest.mark.parametrize("fault", list(BROKEN_ANSWERS), ids=list(BROKEN_ANSWERS))
async def test_a_drain_rides_out_broken_and_throttled_answers(
    fault: str,
    database: str,
    fault_queue: SqsQueue,
    proxy: FaultProxy,
    db: asyncpg.Connection,
) -> None:
    # Given 1,500 messages and an SQS that answers a share of every call badly, when
    # `run --drain` runs through it, then it retries as an AWS SDK does and exits 0 once
    # everything is loaded and deleted
    started = time.monotonic()
    sent = await drain_through(BROKEN_ANSWERS[fault], 1_500, 101, database, fault_queue, proxy)
    await check_invariant(db, fault_queue, sent)
    record(f"SQS: {fault}", 1, len(sent), f"{time.monotonic() - started:.1f}s to drain")


DELETE_FAILURES = {
    "5% of deletes fail (500 after SQS deleted)": Fault("status_after", rate=0.05, targets=DELETES),
    "30% of deletes fail (500 after SQS deleted)": Fault("status_after", rate=0.3, targets=DELETES),
    "30% of deletes fail (500, not deleted)": Fault("status", rate=0.3, targets=DELETES),
    "30% of deletes half fail (SenderFault false)": Fault("partial", rate=0.3, targets=DELETES),
}


@pytest.mark.parametrize("fault", list(DELETE_FAILURES), ids=list(DELETE_FAILURES))
async def test_deletes_under_a_steady_error_rate_leave_nothing_behind(
    fault: str,
    database: str,
    fault_queue: SqsQueue,
    proxy: FaultProxy,
    db: asyncpg.Connection,
) -> None:
    # Given 5,000 messages and a share of DeleteMessageBatch calls failing, some after SQS
    # already deleted their messages (the retry then finds the receipt handles gone), when
    # `run --drain` runs, then each failed call is retried on its own (only its failed
    # entries), a handle that went away because its own delete was accepted counts as
    # deleted, and it exits 0
    sent = await drain_through(DELETE_FAILURES[fault], 5_000, 102, database, fault_queue, proxy)
    await check_invariant(db, fault_queue, sent)
    # And no delete call re-sent a whole batch's worth of calls (about 5,000 / 10 calls,
    # plus one retry per failed call)
    failed = sum(proxy.done.values())
    assert proxy.calls["DeleteMessageBatch"] <= len(sent) // 10 + 4 * failed + 20
    record(f"SQS: {fault}", 1, len(sent), "retried per call")


async def test_a_stop_while_long_polls_are_answered_hands_their_messages_back(
    database: str, sqs_endpoint: str, db: asyncpg.Connection, proxy: FaultProxy
) -> None:
    # Given a service (16 long polls, a 600 s visibility timeout) whose receives SQS has
    # already answered when SIGTERM arrives: the answers are on their way (1 s late)
    from tests.conftest import temporary_queue

    async with temporary_queue(sqs_endpoint, "stop", visibility=600) as queue:
        sent = await queue.send([e.body for e in generate(3_000, seed=103)])
        env = proxied_env(
            database,
            queue,
            proxy,
            INGESTOR_DRAIN="false",
            INGESTOR_VISIBILITY_TIMEOUT="600",
            INGESTOR_RECEIVE_WAIT_SECONDS="20",
            INGESTOR_SHUTDOWN_TIMEOUT="10",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingestor", "run", env=env, stderr=asyncio.subprocess.PIPE
        )
        await wait_for_rows(db, 500)
        proxy.inject(Fault("delay", rate=1.0, targets=RECEIVES, delay=1.0))
        await wait_until(lambda: proxy.done["delay ReceiveMessage"] >= 4, 10)
        # When it is stopped
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stderr.decode()[-2_000:]
        clean(stderr.decode())
        # Then no message is left invisible: each one is committed or visible again at once
        proxy.clear()
        committed = await db.fetchval(
            "SELECT (SELECT count(*) FROM user_logins) + (SELECT count(*) FROM ingestor_rejects)"
        )
        depths = await queue_counts(queue)
        assert depths == (len(sent) - committed, 0)
        # And a drain loads the rest
        code, logs = await drain({**env, "INGESTOR_DRAIN": "true"}, within=120)
        assert code == 0, logs[-2_000:]
        await check_invariant(db, queue, sent)
    record("SQS: SIGTERM while 16 long polls are answered", 2, len(sent), "handed back at once")


async def test_a_queue_deleted_under_the_service_stops_it_with_one_clear_line(
    database: str, sqs_endpoint: str, db: asyncpg.Connection
) -> None:
    from tests.conftest import temporary_queue

    async with temporary_queue(sqs_endpoint, "gone", visibility=30) as queue:
        await queue.send([e.body for e in generate(200, seed=104)])
        env = service_env(fault_settings(database, queue, sqs_endpoint))
        env.update(INGESTOR_DRAIN="false", INGESTOR_RECEIVE_WAIT_SECONDS="1")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingestor", "run", env=env, stderr=asyncio.subprocess.PIPE
        )
        await wait_for_rows(db, 150)
        # When the queue is deleted while the service runs
        await queue._client.delete_queue(QueueUrl=queue.url)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
        logs = stderr.decode()
        # Then it stops with exit 1 and says the queue no longer exists, once
        assert process.returncode == 1, logs[-2_000:]
        clean(logs)
        assert logs.count("no longer exists") == 1, logs[-2_000:]
        assert queue.url in logs
        assert "deliver them again" not in logs
        await queue._client.create_queue(QueueName=queue.url.rsplit("/", 1)[1])


async def test_the_shutdown_timeout_holds_when_sqs_is_slow_to_take_messages_back(
    database: str, sqs_endpoint: str, proxy: FaultProxy
) -> None:
    from tests.conftest import temporary_queue
    from tests.faults.test_outages import hold_lock

    async with temporary_queue(sqs_endpoint, "slow", visibility=600) as queue:
        # Given a service holding messages it cannot commit (a lock), and an SQS that
        # takes 30 s to answer ChangeMessageVisibilityBatch
        await queue.send([e.body for e in generate(300, seed=105)])
        env = proxied_env(
            database,
            queue,
            proxy,
            INGESTOR_DRAIN="false",
            INGESTOR_VISIBILITY_TIMEOUT="600",
            INGESTOR_RECEIVE_WAIT_SECONDS="1",
            INGESTOR_SHUTDOWN_TIMEOUT="4",
        )
        async with hold_lock(database):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ingestor", "run", env=env, stderr=asyncio.subprocess.PIPE
            )
            await wait_until(lambda: proxy.calls["ReceiveMessage"] >= 20, 30)
            proxy.inject(
                Fault("delay", targets=frozenset({"ChangeMessageVisibilityBatch"}), delay=30)
            )
            # When it is stopped
            stopped = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
            took = time.monotonic() - stopped
        # Then it keeps its shutdown timeout, and says why it could not hand them back
        logs = stderr.decode()
        assert took < 4 + 2, logs[-2_000:]
        clean(logs)
        line = next(x for x in logs.splitlines() if "could not hand" in x)
        assert line.split("back:", 1)[1].strip(' "}'), line


async def wait_for_rows(db: asyncpg.Connection, count: int, within: float = 60) -> None:
    async def loaded() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM user_logins") >= count)

    await wait_until(loaded, within, f"{count} rows")


async def queue_counts(queue: SqsQueue) -> tuple[int, int]:
    attributes = await queue._client.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    counts = attributes["Attributes"]
    return (
        int(counts["ApproximateNumberOfMessages"]),
        int(counts["ApproximateNumberOfMessagesNotVisible"]),
    )
