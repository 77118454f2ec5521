"""Readiness: the state machine behind /readyz, fed by hook events."""

from __future__ import annotations

import asyncio

from ingestor.errors import DatabaseUnavailable, QueueUnavailable
from ingestor.models import BatchResult, QueueDepth, WriteResult
from ingestor.readiness import Readiness, Verdict


async def answers() -> None:
    return None


async def refuses() -> None:
    raise DatabaseUnavailable("connection refused")


async def hangs() -> None:
    await asyncio.sleep(60)


def test_not_ready_while_starting_ready_when_running_not_after_stop() -> None:
    readiness = Readiness()
    assert readiness.verdict() == Verdict(False, "starting")
    readiness.on_retry("startup", DatabaseUnavailable("not up yet"), 1, 0.2)
    readiness.on_recovered("startup")
    assert readiness.verdict() == Verdict(False, "starting")
    readiness.on_state("running")
    assert readiness.verdict() == Verdict(True, "ready")
    readiness.on_state("draining")
    assert readiness.verdict() == Verdict(False, "draining")
    readiness.on_state("stopped")
    assert readiness.verdict() == Verdict(False, "stopped")


def test_a_failing_stage_makes_it_unready_until_it_recovers() -> None:
    readiness = Readiness()
    readiness.on_state("running")
    readiness.on_retry("write", DatabaseUnavailable("connection refused"), 1, 0.2)
    readiness.on_retry("receive", QueueUnavailable("timeout"), 1, 0.2)
    assert readiness.verdict() == Verdict(False, "receive failing")
    readiness.on_recovered("receive")
    assert readiness.verdict() == Verdict(False, "write failing")
    readiness.on_recovered("write")
    assert readiness.verdict().ready


def test_a_success_or_a_give_up_ends_failing_for_stages_that_report_no_recovery() -> None:
    readiness = Readiness()
    readiness.on_state("running")
    for stage in ("delete", "heartbeat", "depth", "write", "receive"):
        readiness.on_retry(stage, QueueUnavailable("timeout"), 1, 0.2)
    readiness.on_deleted(BatchResult(0, (("h", "QueueUnavailable"),)))
    assert not readiness.verdict().ready  # a delete that failed is no recovery
    readiness.on_gave_up("delete")  # deletes stop retrying; SQS redelivers those messages
    readiness.on_extended(BatchResult(10))
    readiness.on_queue_depth(QueueDepth(0, 0))
    readiness.on_written(WriteResult(1, 0, 0), [], 0.1)
    assert readiness.verdict() == Verdict(False, "receive failing")
    readiness.on_received(10)
    assert readiness.verdict().ready


async def test_the_live_check_asks_the_database_only_when_otherwise_ready() -> None:
    readiness = Readiness(probe_timeout=0.05)
    readiness.probe_database_with(refuses)
    assert await readiness.check() == Verdict(False, "starting")
    readiness.on_state("running")
    assert await readiness.check() == Verdict(False, "database not answering")
    readiness.probe_database_with(hangs)
    assert await readiness.check() == Verdict(False, "database not answering")
    readiness.probe_database_with(answers)
    assert await readiness.check() == Verdict(True, "ready")
