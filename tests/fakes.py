"""In-memory doubles for the two seams, `QueueClient` and `Sink`, for unit tests."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Sequence

from ingestor.errors import IngestorError, RowRejected, StatementTimeout, TransientError
from ingestor.models import (
    EntryFailure,
    Envelope,
    LoginRow,
    QueueDepth,
    Rejection,
    VaultEntry,
    WriteResult,
)
from ingestor.ports import Hooks

SENT_MS = 1_700_000_000_000  # 2023-11-14 UTC


def envelopes(bodies: Sequence[str | bytes], start: int = 0) -> list[Envelope]:
    return [
        Envelope(f"m{start + i}", f"h{start + i}", body, SENT_MS) for i, body in enumerate(bodies)
    ]


class FakeQueue:
    """Messages in a deque; records every call in `calls` (shared with a FakeSink, if given)."""

    def __init__(self, messages: Sequence[Envelope] = (), calls: list[str] | None = None) -> None:
        self.pending: deque[Envelope] = deque(messages)
        self.deleted: list[str] = []
        self.visibility: dict[str, int] = {}
        self.calls = calls if calls is not None else []
        self.receives = 0

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        self.receives += 1
        batch = [self.pending.popleft() for _ in range(min(10, len(self.pending)))]
        if not batch:
            await asyncio.sleep(0.001 * wait_seconds)  # a (short) long poll
        return batch

    async def delete_batch(self, receipt_handles: Sequence[str]) -> tuple[EntryFailure, ...]:
        self.calls.append(f"delete {len(receipt_handles)}")
        self.deleted.extend(receipt_handles)
        return ()

    async def change_visibility_batch(
        self, receipt_handles: Sequence[str], seconds: int
    ) -> tuple[EntryFailure, ...]:
        self.calls.append(f"visibility {len(receipt_handles)} {seconds}")
        self.visibility.update(dict.fromkeys(receipt_handles, seconds))
        return ()

    async def depths(self) -> QueueDepth:
        return QueueDepth(len(self.pending), 0)


class FakeSink:
    """Keeps committed rows and rejects; can fail transiently or refuse chosen rows."""

    def __init__(
        self,
        calls: list[str] | None = None,
        transient_failures: int = 0,
        refuse: Callable[[LoginRow], bool] = lambda row: False,
        delay: float = 0.0,
        refusal: str = "23514",
        timeout_above: int | None = None,
    ) -> None:
        self.rows: dict[str, LoginRow] = {}
        self.rejects: dict[str, Rejection] = {}
        self.vault: dict[str, VaultEntry] = {}
        self.calls = calls if calls is not None else []
        self.writes = 0
        self._failures = itertools.repeat(True, transient_failures)
        self._refuse = refuse
        self._delay = delay
        self._refusal = refusal
        self._timeout_above = timeout_above

    async def write(
        self,
        rows: Sequence[LoginRow],
        rejects: Sequence[Rejection],
        vault: Sequence[VaultEntry] = (),
    ) -> WriteResult:
        self.writes += 1
        if self._delay:
            await asyncio.sleep(self._delay)
        if next(self._failures, False):
            raise TransientError("database down")
        if self._timeout_above is not None and len(rows) + len(rejects) > self._timeout_above:
            raise StatementTimeout("canceling statement due to statement timeout")
        if any(self._refuse(row) for row in rows):
            raise RowRejected(self._refusal, "RaiseError, constraint no_evil")
        if len({row.message_id for row in rows}) != len(rows):
            raise AssertionError("a batch wrote one message id twice")
        replaced = sum(1 for row in rows if row.message_id in self.rows)
        self.rows.update((row.message_id, row) for row in rows)
        self.rejects.update((r.message_id, r) for r in rejects)
        for entry in vault:
            self.vault.setdefault(entry.token, entry)
        self.calls.append(f"commit {len(rows)}+{len(rejects)}")
        return WriteResult(len(rows) - replaced, replaced, len(rejects))


class RecordingHooks(Hooks):
    """Records the retry, recovery, give-up and depth events it hears, as short strings."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_retry(self, stage: str, error: IngestorError, attempt: int, delay: float) -> None:
        self.events.append(f"retry {stage}")

    def on_recovered(self, stage: str) -> None:
        self.events.append(f"recovered {stage}")

    def on_gave_up(self, stage: str) -> None:
        self.events.append(f"gave up {stage}")

    def on_queue_depth(self, depth: QueueDepth) -> None:
        self.events.append(f"depth {depth.visible}/{depth.in_flight}")
