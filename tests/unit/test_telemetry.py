"""The queue-depth sampler and what a run's telemetry consists of."""

from __future__ import annotations

import asyncio
import contextlib

from pydantic import SecretStr

from ingestor.errors import IngestorError, QueueUnavailable
from ingestor.models import QueueDepth
from ingestor.observe.telemetry import Telemetry, observing, sample_depth
from ingestor.ports import Hooks
from ingestor.settings import Settings
from tests.conftest import TEST_KEY
from tests.fakes import RecordingHooks


class FlakyDepths:
    """Answers 5/1, then fails once, then answers 3/0."""

    def __init__(self) -> None:
        self.answers: list[QueueDepth | IngestorError] = [
            QueueDepth(5, 1),
            QueueUnavailable("timeout"),
            QueueDepth(3, 0),
        ]

    async def depths(self) -> QueueDepth:
        answer = self.answers.pop(0) if self.answers else QueueDepth(3, 0)
        if isinstance(answer, IngestorError):
            raise answer
        return answer


async def test_the_sampler_reports_depths_and_rides_out_a_failed_sample() -> None:
    recorder = RecordingHooks()
    task = asyncio.create_task(sample_depth(FlakyDepths(), 0.01, recorder))
    for _ in range(1000):  # up to 10 s
        if len(recorder.events) >= 5:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert recorder.events[:4] == [
        "depth 5/1",
        "retry depth",
        "recovered depth",
        "depth 3/0",
    ]


def settings(**values: object) -> Settings:
    return Settings(queue_url="http://127.0.0.1:9/q", hmac_key=SecretStr(TEST_KEY), **values)


async def test_with_port_and_progress_off_only_readiness_observes() -> None:
    telemetry = Telemetry(settings(metrics_port=0, progress_interval=0), Hooks())
    assert (telemetry.metrics, telemetry.progress) == (None, None)
    async with observing(settings(metrics_port=0), Hooks()) as running:
        assert running.metrics is None
        assert running.progress is not None
