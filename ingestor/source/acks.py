"""Acknowledgement: deleting committed messages from SQS, and changing the visibility of
held ones (the heartbeat's extensions, the hand-back of visibility 0). The one home of
their policy: calls of 10 entries, how many at once, and how each call is retried.

Each call is retried on its own, with backoff, so one failing call neither cancels its
siblings nor makes them run again; a retry carries only the entries that failed (the
whole call after no answer, the entries SQS reports as its own fault after a partial
failure). A delete whose retry finds its receipt handle gone is done: its first try was
accepted, only the answer was lost. What still fails after the last try is returned, per
receipt handle, for the caller to count (SQS redelivers those messages, and the upsert
keeps one row each). A queue that refuses the call itself (gone, access denied) raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from ingestor.errors import TransientError
from ingestor.models import EntryFailure, SqsBatchResult
from ingestor.ports import BatchCalls, Hooks
from ingestor.retry import Backoff
from ingestor.source.sqs_errors import RECEIPT_GONE

BATCH = 10  # entries per SQS *Batch call: the API's limit


# About 6 s of tries: a blip passes, and a message whose delete still fails comes back
# after its visibility timeout and upserts onto its row.
ACK_BACKOFF = Backoff(base=0.1, cap=2.0, attempts=6)


@dataclass(frozen=True, slots=True)
class AckPolicy:
    # Calls in flight at once per operation (one batch's deletes, one heartbeat): a big
    # heartbeat cannot crowd out deletes, and 2,000 deletes take 13 round trips.
    concurrency: int = 16
    backoff: Backoff = ACK_BACKOFF

    def connections(self, operations: int) -> int:
        """HTTP connections for `operations` running at once."""
        return self.concurrency * operations


DEFAULT_POLICY = AckPolicy()
Call = Callable[[Sequence[str]], Awaitable[tuple[EntryFailure, ...]]]


class Acknowledger:
    """Runs batch calls over any number of receipt handles under one `AckPolicy`,
    reporting retries, recoveries and give-ups to `hooks` under a stage name."""

    def __init__(
        self, queue: BatchCalls, policy: AckPolicy | None = None, hooks: Hooks | None = None
    ) -> None:
        self._queue = queue
        self._policy = policy or DEFAULT_POLICY
        self._hooks = hooks or Hooks()

    async def delete(self, handles: Sequence[str], stage: str = "delete") -> SqsBatchResult:
        return await self._run(handles, self._queue.delete_batch, stage, deleting=True)

    async def change_visibility(
        self, handles: Sequence[str], seconds: int, stage: str = "heartbeat"
    ) -> SqsBatchResult:
        async def call(chunk: Sequence[str]) -> tuple[EntryFailure, ...]:
            return await self._queue.change_visibility_batch(chunk, seconds)

        return await self._run(handles, call, stage, deleting=False)

    async def _run(
        self, handles: Sequence[str], call: Call, stage: str, *, deleting: bool
    ) -> SqsBatchResult:
        chunks = [handles[i : i + BATCH] for i in range(0, len(handles), BATCH)]
        results: dict[int, SqsBatchResult] = {}
        backoff, hooks = self._policy.backoff, self._hooks

        refused = False

        async def worker(next_chunks: Iterator[tuple[int, Sequence[str]]]) -> None:
            # The chunks in order, each taken by one worker: at most `concurrency` calls
            # at once, with a task per worker rather than per chunk (a delete of 2,000
            # handles is 200 chunks). After a refusal no worker starts another call.
            nonlocal refused
            for index, chunk in next_chunks:
                if refused:
                    return
                try:
                    results[index] = await _Chunk(chunk, call, deleting).run(backoff, stage, hooks)
                except BaseException:
                    refused = True
                    raise

        shared = iter(enumerate(chunks))
        try:  # a refusal of the call itself (the queue is gone) stops the other chunks too
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._policy.concurrency, len(chunks))):
                    group.create_task(worker(shared))
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None  # already one of ours: a QueueError
        ordered = [results[i] for i in range(len(chunks))]  # failures in the handles' order
        return SqsBatchResult(
            sum(r.succeeded for r in ordered), tuple(f for r in ordered for f in r.failed)
        )


class _Chunk:
    """One call's entries through their tries."""

    def __init__(self, handles: Sequence[str], call: Call, deleting: bool) -> None:
        self.total = len(handles)
        self.pending = list(handles)
        self.call = call
        self.deleting = deleting
        self.unanswered: set[str] = set()  # sent in a call whose answer was lost
        self.failed: list[tuple[str, str]] = []
        self.exhausted = False  # the last try still failed for a reason worth retrying

    async def run(self, backoff: Backoff, stage: str, hooks: Hooks) -> SqsBatchResult:
        attempts, failures = backoff.attempts or 1, 0  # calls of this chunk that failed
        for attempt in range(1, attempts + 1):
            error: TransientError | None = None
            try:
                self.pending = self._settle(await self.call(self.pending), attempt == attempts)
            except TransientError as failed:
                error = self._unanswered(failed, attempt == attempts)
            if not self.pending:
                break
            delay = backoff.delay(attempt)
            if error is not None:
                failures += 1  # the hooks count an outage from an operation's first failure
                hooks.on_retry(stage, error, failures, delay)
            await asyncio.sleep(delay)
        if failures:  # this operation's outage ends, one way or the other
            (hooks.on_gave_up if self.exhausted else hooks.on_recovered)(stage)
        return SqsBatchResult(self.total - len(self.failed), tuple(self.failed))

    def _unanswered(self, error: TransientError, last: bool) -> TransientError:
        """A call without an answer: SQS may or may not have done it."""
        self.unanswered.update(self.pending)
        if last:
            self.failed += [(handle, type(error).__name__) for handle in self.pending]
            self.pending, self.exhausted = [], True
        return error

    def _settle(self, failures: tuple[EntryFailure, ...], last: bool) -> list[str]:
        """Record a call's failed entries; return those to try again."""
        retry: list[str] = []
        for failure in failures:
            if self.deleting and failure.code == RECEIPT_GONE and failure.handle in self.unanswered:
                continue  # its earlier, unanswered delete was accepted: done
            if failure.retryable and not last:
                retry.append(failure.handle)
            else:
                self.exhausted = self.exhausted or failure.retryable
                self.failed.append((failure.handle, failure.code))
        return retry
