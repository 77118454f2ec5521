"""An in-process stand-in for SQS with a configurable round trip, to plan for a real
region that cannot be reached from here. It implements ingestor's `QueueClient`."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from ingestor.models import BatchResult, Envelope
from ingestor.sqs import _CONCURRENT_BATCH_CALLS


class SqsDouble:
    def __init__(self, messages: Sequence[Envelope], round_trip: float) -> None:
        self._pending = deque(messages)
        self._round_trip = round_trip
        self.deleted = 0

    async def receive(self, wait_seconds: int, visibility_timeout: int) -> list[Envelope]:
        await asyncio.sleep(self._round_trip)
        pending = self._pending
        return [pending.popleft() for _ in range(min(10, len(pending)))]

    async def delete(self, receipt_handles: Sequence[str]) -> BatchResult:
        await self._batched(len(receipt_handles))
        self.deleted += len(receipt_handles)
        return BatchResult(len(receipt_handles))

    async def change_visibility(self, receipt_handles: Sequence[str], seconds: int) -> BatchResult:
        await self._batched(len(receipt_handles))
        return BatchResult(len(receipt_handles))

    async def depth(self) -> int:
        return len(self._pending)

    async def _batched(self, count: int) -> None:
        # As ingestor's SQS client sends them: calls of 10 handles, at most
        # _CONCURRENT_BATCH_CALLS of them at a time, each one round trip.
        calls = -(-count // 10)
        waves = -(-calls // _CONCURRENT_BATCH_CALLS)
        await asyncio.sleep(self._round_trip * waves)
