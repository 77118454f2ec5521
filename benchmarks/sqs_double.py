"""An in-process stand-in for SQS with a configurable round trip, to plan for a real
region that cannot be reached from here. It implements ingestor's `QueueClient`.

It holds no list of messages: each receive makes up to 10 envelopes from a pool of
bodies, cycling through it, with message ids unique to this queue, until `count`
messages were handed out or `seconds` have passed since the first receive (whichever
comes first); it is then empty. So many receivers over a few seconds need no memory for
hundreds of thousands of envelopes, and a run lasts about `seconds` however fast the
consumer is. Making an envelope costs about a microsecond, 10 per receive: counted in
the consumer's process, as parsing an answer would be.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence

from ingestor.models import EntryFailure, Envelope, QueueDepth

SENT_MS = 1_700_000_000_000


class SqsDouble:
    def __init__(
        self,
        bodies: Sequence[str | bytes],
        round_trip: float,
        count: int,
        seconds: float | None = None,
    ) -> None:
        self._bodies = itertools.cycle(bodies)
        self._round_trip = round_trip
        self._count = count
        self._seconds = seconds
        self._prefix = uuid.uuid4().hex[:8]  # ids unique to this queue: rows are inserts
        self._ends_at: float | None = None
        self.served = 0
        self.deleted = 0

    def _take(self) -> int:
        now = time.monotonic()
        if self._ends_at is None and self._seconds is not None:
            self._ends_at = now + self._seconds
        if self._ends_at is not None and now >= self._ends_at:
            return 0
        return min(10, self._count - self.served)

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        await asyncio.sleep(self._round_trip)
        start, take = self.served, self._take()
        self.served += take
        prefix, bodies = self._prefix, self._bodies
        return [
            Envelope(f"{prefix}-{n}", f"h{prefix}-{n}", next(bodies), SENT_MS)
            for n in range(start, start + take)
        ]

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
        over = self._ends_at is not None and time.monotonic() >= self._ends_at
        return QueueDepth(0 if over else self._count - self.served, 0)
