"""Readiness: can this copy do its work right now? What /readyz answers.

Fed by the hooks: not ready while starting (migrations, first answers from the queue and
the database), ready while running, not ready while a stage is failing (an outage of the
queue or the database) and from the moment a stop is requested. Hooks only speak when
there is work, so an idle service would not notice a database that went away: `check`
adds a quick live query for that. Its answer is kept for a second, and probes that arrive
while one is under way wait for that one: a storm of probes costs the writers' pool one
query a second, not one per probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ingestor.errors import IngestorError
from ingestor.models import QueueDepth, Rejection, SqsBatchResult, WriteResult
from ingestor.ports import Hooks

Probe = Callable[[], Awaitable[object]]
PROBE_TIMEOUT = 2.0  # seconds; a probe that takes longer counts as a failure
PROBE_TTL = 1.0  # seconds a live check's answer is reused


@dataclass(frozen=True, slots=True)
class Verdict:
    ready: bool
    reason: str  # a stage or state name: never data, never an error message


class Readiness(Hooks):
    def __init__(
        self,
        probe_timeout: float = PROBE_TIMEOUT,
        *,
        probe_ttl: float = PROBE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = "starting"
        self._failing: set[str] = set()
        self._database: Probe | None = None
        self._timeout = probe_timeout
        self._ttl = probe_ttl
        self._clock = clock
        self._answer: tuple[float, bool] | None = None  # (when, did the database answer)
        self._asking: asyncio.Future[bool] | None = None

    def probe_database_with(self, probe: Probe) -> None:
        """A live check of the database (a `SELECT 1`), run by `check`."""
        self._database = probe

    def verdict(self) -> Verdict:
        """What the hooks say, without a live check."""
        if self._state != "running":
            return Verdict(False, self._state)
        if self._failing:
            return Verdict(False, f"{sorted(self._failing)[0]} failing")
        return Verdict(True, "ready")

    async def check(self) -> Verdict:
        """The hooks' verdict, then, if that is ready, a live check of the database (or
        its answer of less than a second ago)."""
        verdict, database = self.verdict(), self._database
        if not verdict.ready or database is None:
            return verdict
        if await self._answers(database):
            return verdict
        return Verdict(False, "database not answering")

    async def _answers(self, database: Probe) -> bool:
        if self._answer is not None and self._clock() - self._answer[0] < self._ttl:
            return self._answer[1]
        if self._asking is None:
            self._asking = asyncio.ensure_future(self._ask(database))
        # Shielded: a probe whose client hangs up does not cancel the others' answer.
        return await asyncio.shield(self._asking)

    async def _ask(self, database: Probe) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await database()
            answered = True
        except Exception:  # whatever the failure, the answer is the same: not ready
            answered = False
        self._answer, self._asking = (self._clock(), answered), None
        return answered

    def on_state(self, state: str) -> None:
        self._state = state

    def on_retry(self, stage: str, error: IngestorError, attempt: int, delay: float) -> None:
        self._failing.add(stage)

    def on_recovered(self, stage: str) -> None:
        self._failing.discard(stage)

    # A success is also a recovery: deletes give up after a few retries and the depth
    # sampler and heartbeat try once per beat, so no retry loop reports their recovery.
    def on_received(self, count: int) -> None:
        self._failing.discard("receive")

    def on_written(
        self, result: WriteResult, rejections: Sequence[Rejection], seconds: float
    ) -> None:
        self._failing.discard("write")

    def on_gave_up(self, stage: str) -> None:
        self._failing.discard(stage)  # the next failure marks it again

    def on_extended(self, result: SqsBatchResult) -> None:
        self._failing.discard("heartbeat")

    def on_queue_depth(self, depth: QueueDepth) -> None:
        self._failing.discard("depth")
