"""An in-process stand-in for SQS with a configurable round trip, to plan for a real
region that cannot be reached from here. It implements ingestor's `QueueClient`."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from ingestor.models import EntryFailure, Envelope, QueueDepth


class SqsDouble:
    def __init__(self, messages: Sequence[Envelope], round_trip: float) -> None:
        self._pending = deque(messages)
        self._round_trip = round_trip
        self.deleted = 0

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        await asyncio.sleep(self._round_trip)
        pending = self._pending
        return [pending.popleft() for _ in range(min(10, len(pending)))]

    async def delete_batch(self, receipt_handles: Sequence[str]) -> tuple[EntryFailure, ...]:
        # One call of up to 10 handles, one round trip; the service's Acknowledger runs
        # them 16 at a time, as against SQS.
        await asyncio.sleep(self._round_trip)
        self.deleted += len(receipt_handles)
        return ()

    async def change_visibility_batch(
        self, receipt_handles: Sequence[str], seconds: int
    ) -> tuple[EntryFailure, ...]:
        await asyncio.sleep(self._round_trip)
        return ()

    async def depths(self) -> QueueDepth:
        return QueueDepth(len(self._pending), 0)
