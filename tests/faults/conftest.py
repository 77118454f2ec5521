"""Fixtures for fault injection: servers of the test's own (so it may stop them), the
invariant every fault test ends with, and a report table printed after the run."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr

from ingestor.demo.embedded import EmbeddedSqs
from ingestor.observe.logs import JsonFormatter
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from tests.conftest import REGION, TEST_KEY, temporary_queue
from tests.integration.helpers import pii_in_logs, queue_is_empty
from tests.waiting import wait_until


@dataclass
class FaultRow:
    fault: str
    runs: int
    messages: int
    lost: int
    doubled: int
    recovery: str


REPORT: list[FaultRow] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    write = terminalreporter.write_line
    write("")
    write("fault injection: nothing lost, nothing doubled")
    write(f"{'fault':<48} {'runs':>5} {'messages':>9} {'lost':>5} {'doubled':>8}  time to recover")
    for row in REPORT:
        write(
            f"{row.fault:<48} {row.runs:>5} {row.messages:>9,} {row.lost:>5} {row.doubled:>8}"
            f"  {row.recovery}"
        )


def record(fault: str, runs: int, messages: int, recovery: str) -> None:
    """A row of the report; call it after check_invariant passed (nothing was lost or
    doubled)."""
    REPORT.append(FaultRow(fault, runs, messages, 0, 0, recovery))


async def check_invariant(
    connection: asyncpg.Connection, queue: SqsQueue, sent: Sequence[str]
) -> None:
    """Every sent message is once in user_logins or once in the rejects, never both, and the
    queue is empty."""
    rows = Counter(
        r["message_id"] for r in await connection.fetch("SELECT message_id FROM user_logins")
    )
    rejects = Counter(
        r["message_id"] for r in await connection.fetch("SELECT message_id FROM ingestor_rejects")
    )
    lost = [m for m in sent if rows[m] + rejects[m] == 0]
    doubled = [m for m in sent if rows[m] + rejects[m] > 1]
    unknown = (set(rows) | set(rejects)) - set(sent)
    assert (lost, doubled, unknown) == ([], [], set())
    assert await queue_is_empty(queue)


async def wait_for_queue_empty(queue: SqsQueue, within: float) -> None:
    await wait_until(lambda: queue_is_empty(queue), within, "the queue to empty", every=0.5)


@pytest.fixture(autouse=True)
def logs_carry_no_pii_or_key(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every fault test's in-process ingestor logs, extras included: no address, no
    device id, no key. (Libraries' DEBUG logs are not ours: botocore's dump requests.)"""
    caplog.set_level(logging.DEBUG, logger="ingestor")
    yield
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records if r.name.startswith("ingestor"))
    assert pii_in_logs(text, TEST_KEY) == []


@pytest.fixture
def own_sqs() -> Iterator[EmbeddedSqs]:
    """An SQS server of this test's own, which the test may stop and start."""
    server = EmbeddedSqs()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest_asyncio.fixture
async def fault_queue(sqs_endpoint: str) -> AsyncIterator[SqsQueue]:
    """A fresh queue with a short visibility timeout on the shared SQS server."""
    async with temporary_queue(sqs_endpoint, "fault", visibility=3) as queue:
        yield queue


def fault_settings(database_url: str, queue: SqsQueue, endpoint: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "queue_url": queue.url,
        "database_url": SecretStr(database_url),
        "hmac_key": SecretStr(TEST_KEY),
        "sqs_endpoint_url": endpoint,
        "aws_region": REGION,
        "drain": True,
        "drain_wait_seconds": 1,
        "visibility_timeout": 3,
        "flush_interval": 0.2,
        "batch_size": 200,
        "shutdown_timeout": 5,
        "metrics_port": 0,  # three consumers may run at once: none takes a port
        **overrides,
    }
    return Settings(**values)


SettingsFactory = Callable[..., Settings]
