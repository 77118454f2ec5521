"""The receipt handles this process holds: received and not yet committed, and committed
and not yet deleted.

The heartbeat extends the visibility of the first kind while they wait (so SQS does not
hand them to another consumer during a slow flush or an outage), up to a maximum hold; on
an abort they are handed back to SQS (visibility 0) so another consumer gets them at
once. A drain is not over while either kind remains: SQS counts both as in flight.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


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
