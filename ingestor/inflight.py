"""The receipt handles this process holds: received, not yet committed.

On an abort they are handed back to SQS (visibility 0) so another consumer gets them at
once instead of after the visibility timeout; a heartbeat can extend them.
"""

from __future__ import annotations

from collections.abc import Iterable


class InFlight:
    __slots__ = ("_handles",)

    def __init__(self) -> None:
        self._handles: set[str] = set()

    def add(self, handles: Iterable[str]) -> None:
        self._handles.update(handles)

    def committed(self, handles: Iterable[str]) -> None:
        self._handles.difference_update(handles)

    def snapshot(self) -> list[str]:
        return list(self._handles)

    def __len__(self) -> int:
        return len(self._handles)
