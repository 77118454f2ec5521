"""Retries as the hooks see them: each retry, then either the recovery or the give-up."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from ingestor.errors import QueueUnavailable
from ingestor.observe.hooks import HookChain, LogHooks
from ingestor.retry import Backoff, observed
from tests.fakes import RecordingHooks


def failing(times: int) -> Callable[[], Awaitable[str]]:
    """An operation that fails `times` times, then succeeds."""
    calls = iter(range(times + 1))

    async def operation() -> str:
        if next(calls) < times:
            raise QueueUnavailable("SQS unreachable: ClientConnectorError")
        return "done"

    return operation


FAST = Backoff(base=0.001, cap=0.001, attempts=3)


async def test_a_retry_that_succeeds_reports_the_recovery() -> None:
    hooks = RecordingHooks()
    assert await observed("delete", failing(2), FAST, hooks) == "done"
    assert hooks.events == ["retry delete", "retry delete", "recovered delete"]


async def test_a_retry_that_runs_out_reports_the_give_up_and_the_next_outage_logs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given deletes that fail more often than they are retried
    caplog.set_level(logging.INFO, logger="ingestor")
    hooks = RecordingHooks()
    chain = HookChain(LogHooks(), hooks)
    # When two such deletes run one after the other
    for _ in range(2):
        with pytest.raises(QueueUnavailable):
            await observed("delete", failing(10), FAST, chain)
    # Then each gives up once, and each is logged as an outage of its own
    assert hooks.events.count("gave up delete") == 2
    starts = [r for r in caplog.records if getattr(r, "event", "") == "outage_start"]
    assert len(starts) == 2


def test_two_operations_failing_at_once_are_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    # Given two writers whose deletes fail during the same SQS outage
    caplog.set_level(logging.INFO, logger="ingestor")
    hooks = LogHooks()
    error = QueueUnavailable("SQS unreachable: ClientConnectorError")
    hooks.on_retry("delete", error, 1, 0.1)  # writer A
    hooks.on_retry("delete", error, 1, 0.1)  # writer B
    hooks.on_retry("delete", error, 2, 0.2)  # writer A again
    # When A recovers, B fails once more, then B recovers
    hooks.on_recovered("delete")
    hooks.on_retry("delete", error, 3, 0.4)
    hooks.on_recovered("delete")
    # Then the log holds one start and one end
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events == ["outage_start", "outage_end"]
