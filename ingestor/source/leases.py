"""The receipt handles this process holds: received and not yet committed, and committed
and not yet deleted.

The heartbeat extends the visibility of the first kind while they wait (so SQS does not
hand them to another consumer during a slow flush or an outage), up to a maximum hold; on
an abort they are handed back to SQS (visibility 0) so another consumer gets them at
once. A drain is not over while either kind remains: SQS counts both as in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ingestor.errors import IngestorError
from ingestor.ports import Hooks
from ingestor.source.acks import Acknowledger


class InFlight:
    __slots__ = ("_deleting", "_received_at")

    def __init__(self) -> None:
        self._received_at: dict[str, float] = {}
        self._deleting = 0

    def add(self, handles: Iterable[str], now: float) -> None:
        self._received_at.update(dict.fromkeys(handles, now))

    def committed(self, handles: Sequence[str]) -> None:
        """Committed: no longer held for a commit, now waiting for their delete."""
        self.released(handles)
        self._deleting += len(handles)

    def deleted(self, count: int) -> None:
        """The delete of `count` committed messages ended (however it went)."""
        self._deleting -= count

    def released(self, handles: Iterable[str]) -> None:
        """Handed back to the queue: no longer this process's."""
        received_at = self._received_at
        for handle in handles:
            received_at.pop(handle, None)

    def snapshot(self) -> list[str]:
        return list(self._received_at)

    def held_since(self, cutoff: float) -> list[str]:
        """Handles received at or after `cutoff`: those still worth extending."""
        return [handle for handle, at in self._received_at.items() if at >= cutoff]

    @property
    def idle(self) -> bool:
        """Nothing received is uncommitted, nothing committed is still being deleted."""
        return not self._received_at and not self._deleting

    def __len__(self) -> int:
        return len(self._received_at)


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """How held messages are kept: extended every `interval` seconds to
    `visibility_timeout`, for at most `max_hold_seconds`."""

    interval: float
    visibility_timeout: int
    max_hold_seconds: float


async def heartbeat(
    inflight: InFlight, acks: Acknowledger, hooks: Hooks, terms: LeaseTerms
) -> None:
    """Keep held messages invisible while they wait for a commit, so a slow flush or an
    outage does not make SQS hand them to another consumer. A message held longer than
    `terms.max_hold_seconds` is no longer extended: it goes back to the queue (and, after
    maxReceiveCount, to the dead-letter queue) instead of being held forever. Each beat's
    calls are retried as `acks.py` says; a beat that still fails is reported and the next
    one tries again. Runs until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(terms.interval)
        handles = inflight.held_since(loop.time() - terms.max_hold_seconds)
        if not handles:
            continue
        try:
            result = await acks.change_visibility(handles, terms.visibility_timeout)
        except IngestorError as error:  # the queue refused the call itself
            hooks.on_retry("heartbeat", error, 1, terms.interval)
            continue
        hooks.on_extended(result)


async def hand_back(inflight: InFlight, acks: Acknowledger, hooks: Hooks, budget: float) -> None:
    """Hand what was received and not committed back to SQS (visibility 0) within
    `budget` seconds, so another consumer takes it at once."""
    handles = inflight.snapshot()
    if not handles:
        return
    try:
        async with asyncio.timeout(budget):
            result = await acks.change_visibility(handles, 0, "release")
    except TimeoutError:
        hooks.on_not_released(len(handles), f"SQS did not answer within {budget:.1f} s")
        return
    except IngestorError as error:
        hooks.on_not_released(len(handles), str(error))
        return
    inflight.released(handles)
    hooks.on_released(result)
    if result.failed:
        codes = sorted({code for _, code in result.failed})
        hooks.on_not_released(len(result.failed), f"SQS refused them ({', '.join(codes)})")
