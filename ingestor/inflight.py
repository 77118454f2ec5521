"""The receipt handles this process holds: received, not yet committed.

The heartbeat extends their visibility while they wait (so SQS does not hand them to
another consumer during a slow flush or an outage), up to a maximum hold; on an abort they
are handed back to SQS (visibility 0) so another consumer gets them at once.
"""

from __future__ import annotations

from collections.abc import Iterable


class InFlight:
    __slots__ = ("_received_at",)

    def __init__(self) -> None:
        self._received_at: dict[str, float] = {}

    def add(self, handles: Iterable[str], now: float) -> None:
        self._received_at.update(dict.fromkeys(handles, now))

    def committed(self, handles: Iterable[str]) -> None:
        received_at = self._received_at
        for handle in handles:
            received_at.pop(handle, None)

    def snapshot(self) -> list[str]:
        return list(self._received_at)

    def held_since(self, cutoff: float) -> list[str]:
        """Handles received at or after `cutoff`: those still worth extending."""
        return [handle for handle, at in self._received_at.items() if at >= cutoff]

    def __len__(self) -> int:
        return len(self._received_at)
