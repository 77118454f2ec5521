"""Readiness: the state machine behind /readyz, fed by hook events."""

from __future__ import annotations

import asyncio

from ingestor.errors import DatabaseUnavailable, QueueUnavailable
from ingestor.models import QueueDepth, SqsBatchResult, WriteResult
from ingestor.observe.readiness import Readiness, Verdict


async def answers() -> None:
    return None


async def refuses() -> None:
    raise DatabaseUnavailable("connection refused")


async def hangs() -> None:
    await asyncio.sleep(60)


class CountingProbe:
    """A database probe that counts its calls and answers once released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        await self.release.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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
    readiness.on_deleted(SqsBatchResult(0, (("h", "QueueUnavailable"),)))
    assert not readiness.verdict().ready  # a delete that failed is no recovery
    readiness.on_gave_up("delete")  # deletes stop retrying; SQS redelivers those messages
    readiness.on_extended(SqsBatchResult(10))
    readiness.on_queue_depth(QueueDepth(0, 0))
    readiness.on_written(WriteResult(1, 0, 0), [], 0.1)
    assert readiness.verdict() == Verdict(False, "receive failing")
    readiness.on_received(10)
    assert readiness.verdict().ready


async def test_the_live_check_asks_the_database_only_when_otherwise_ready() -> None:
    clock = Clock()  # each check below comes after the previous answer's second
    readiness = Readiness(probe_timeout=0.05, clock=clock)
    readiness.probe_database_with(refuses)
    assert await readiness.check() == Verdict(False, "starting")
    readiness.on_state("running")
    assert await readiness.check() == Verdict(False, "database not answering")
    readiness.probe_database_with(hangs)
    clock.now += 1.5
    assert await readiness.check() == Verdict(False, "database not answering")
    readiness.probe_database_with(answers)
    clock.now += 1.5
    assert await readiness.check() == Verdict(True, "ready")


async def test_a_probe_storm_pings_the_database_once_a_second() -> None:
    # Given a ready service whose database answers
    clock, probe = Clock(), CountingProbe()
    readiness = Readiness(probe_timeout=5, clock=clock)
    readiness.probe_database_with(probe)
    readiness.on_state("running")
    # When 200 probes arrive at once
    storm = [asyncio.create_task(readiness.check()) for _ in range(200)]
    await asyncio.sleep(0)
    probe.release.set()
    verdicts = await asyncio.gather(*storm)
    # Then the database was asked once, and every probe got its answer
    assert probe.calls == 1
    assert set(verdicts) == {Verdict(True, "ready")}
    # And within the second that follows, later probes reuse that answer
    clock.now += 0.9
    assert await readiness.check() == Verdict(True, "ready")
    assert probe.calls == 1
    # And after it, the database is asked again
    clock.now += 0.2
    assert await readiness.check() == Verdict(True, "ready")
    assert probe.calls == 2


async def test_a_failed_ping_is_cached_too_but_the_hooks_verdict_is_not() -> None:
    clock = Clock()
    readiness = Readiness(probe_timeout=0.05, clock=clock)
    readiness.probe_database_with(refuses)
    readiness.on_state("running")
    assert await readiness.check() == Verdict(False, "database not answering")
    readiness.probe_database_with(answers)
    assert await readiness.check() == Verdict(False, "database not answering")  # cached
    readiness.on_state("draining")  # the hooks speak at once, whatever is cached
    assert await readiness.check() == Verdict(False, "draining")
    readiness.on_state("running")
    clock.now += 1.5
    assert await readiness.check() == Verdict(True, "ready")
