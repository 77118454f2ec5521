"""The write stage: batch processed messages, commit them, then delete them from the queue.

A batch is flushed when it reaches `batch_size` or `flush_interval` after its first message.
Its rows and rejects commit in one transaction through the `Sink`; only then are its
messages deleted (PRODUCT.md rule 5), through the `Acknowledger` (`source/acks.py`: its calls,
concurrency and retries). Rows the database refuses are isolated as rejects
(`sink/isolation.py`) and the rest of the batch commits (rule 7). A delete that still fails
after its retries does not fail the pipeline (the message comes back and upserts onto its
row); a queue that refuses deletes altogether (gone, access denied) does.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from ingestor.errors import StatementTimeout
from ingestor.models import (
    LoginRow,
    Processed,
    Rejection,
    WriteResult,
)
from ingestor.ports import Hooks, Sink
from ingestor.retry import RETRY_FOREVER, Backoff, observed
from ingestor.sink.isolation import (
    Batch,
    Breaker,
    Digest,
    split_items,
    split_outcomes,
    vault_entries,
    write_isolating,
)
from ingestor.source.acks import Acknowledger
from ingestor.source.leases import InFlight

# Committed batches whose deletes a writer keeps going while it commits the next ones.
# Deleting 2,000 messages takes 13 round trips at 16 calls at a time: awaited in line,
# that alone held a writer to ~7,700 msg/s at a 20 ms round trip.
PENDING_DELETES = 2


@dataclass(frozen=True, slots=True)
class WriterConfig:
    batch_size: int
    flush_interval: float
    write_backoff: Backoff = RETRY_FOREVER
    pending_deletes: int = PENDING_DELETES


def delete_calls(receivers: int, writers: int, least: int) -> int:
    """Delete calls at once for one batch, so that deleting keeps up with receiving: a
    receiver brings up to 10 messages a round trip and a delete call takes 10 a round
    trip, so the writers need about one call going per receiver; twice that, as each call
    also waits its turn on the event loop. At least `least` (the acknowledgement policy's).

    More calls per batch, not more batches: the writers' pending deletes hold at most
    `PENDING_DELETES` batches of receipt handles each, however many receivers there are.
    Keeping more batches going instead (each at 16 calls) held 8 batches a writer at 256
    receivers, 64,000 handles across 4 writers, most of them waiting for a call."""
    return max(least, math.ceil(2 * receivers / (writers * PENDING_DELETES)))


class BatchWriter:
    """One writer; several may run, each committing its own batches."""

    def __init__(
        self,
        *,
        inbox: asyncio.Queue[list[Processed] | None],
        sink: Sink,
        acks: Acknowledger,
        inflight: InFlight,
        hooks: Hooks,
        config: WriterConfig,
        digest: Digest,
        breaker: Breaker | None = None,
        size: TransactionSize | None = None,
    ) -> None:
        self._inbox = inbox
        self._sink = sink
        self._acks = acks
        self._inflight = inflight
        self._hooks = hooks
        self._config = config
        self._digest = digest
        self._breaker = breaker or Breaker()
        self._size = size or TransactionSize(config.batch_size, hooks=hooks)
        self._deleting: set[asyncio.Task[None]] = set()
        self._delete_slots = asyncio.Semaphore(config.pending_deletes)
        self._delete_failure: BaseException | None = None

    async def run(self) -> None:
        """Flush batches until the end-of-stream marker (None) arrives; each batch's
        deletes go on in the background (at most `pending_deletes` at once) while the next
        batch is collected and committed. Returns once every delete has finished; raises
        what made a delete fail for good (the queue refuses deletes)."""
        ended = False
        try:
            while not ended:
                batch, ended = await self.collect()
                if batch:
                    await self.flush(batch, delete_in_background=True)
                self._raise_delete_failure()
        except BaseException:
            for task in self._deleting:  # stopping now: SQS redelivers, the upsert absorbs it
                task.cancel()
            raise
        finally:
            await asyncio.gather(*self._deleting, return_exceptions=True)
        self._raise_delete_failure()

    def _raise_delete_failure(self) -> None:
        if self._delete_failure is not None:
            raise self._delete_failure

    async def collect(self) -> tuple[list[Processed], bool]:
        """Gather up to batch_size messages, for at most flush_interval after the first.
        Returns the batch and whether the stream ended."""
        inbox, size = self._inbox, self._config.batch_size
        batch: list[Processed] = []
        loop = asyncio.get_running_loop()
        deadline = float("inf")
        while len(batch) < size:
            try:
                # Take what is already queued without a timer: the common case under load.
                item = inbox.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    item = await self._next_item(deadline - loop.time())
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            if not batch:
                deadline = loop.time() + self._config.flush_interval
            batch.extend(item)
        return batch, False

    async def _next_item(self, remaining: float) -> list[Processed] | None:
        """The next item, or TimeoutError after `remaining` seconds (inf: no limit).
        asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        arrives as the item does, and the writer would then never stop."""
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(None if remaining == float("inf") else remaining):
            return await self._inbox.get()

    async def flush(
        self, batch: list[Processed], *, delete_in_background: bool = False
    ) -> WriteResult:
        """Commit `batch`, then delete its messages from the queue (awaited, or started in
        the background)."""
        rows, rejects = split_outcomes(batch)
        context = Batch(batch, self._digest, vault_entries(batch), self._breaker)
        progress = _Progress(self._sink, [*rows, *rejects], context, self._size)
        started = time.perf_counter()
        result, refused = await observed(
            "write", progress.run, self._config.write_backoff, self._hooks
        )
        handles = [item.receipt_handle for item in batch]
        self._inflight.committed(handles)
        self._hooks.on_written(result, _as_stored(rejects, refused), time.perf_counter() - started)
        self._hooks.on_committed(batch)
        if delete_in_background:
            await self._start_delete(handles)
        else:
            await self._delete(handles)
        return result

    async def _start_delete(self, handles: list[str]) -> None:
        await self._delete_slots.acquire()  # backpressure: a slow queue slows the writer
        task = asyncio.create_task(self._delete(handles), name="delete")
        self._deleting.add(task)
        task.add_done_callback(self._delete_done)

    def _delete_done(self, task: asyncio.Task[None]) -> None:
        self._deleting.discard(task)
        self._delete_slots.release()
        if not task.cancelled() and task.exception() is not None:
            self._delete_failure = self._delete_failure or task.exception()

    async def _delete(self, handles: list[str]) -> None:
        """Delete committed messages (the rows are safe: one whose delete fails for good
        is redelivered and upserts onto its row)."""
        try:
            self._hooks.on_deleted(await self._acks.delete(handles))
        finally:
            self._inflight.deleted(len(handles))


def _as_stored(rejects: list[Rejection], refused: list[Rejection]) -> list[Rejection]:
    """The rejects as committed: one the database refused counts once, as its replacement."""
    replaced = {r.message_id for r in refused}
    return [r for r in rejects if r.message_id not in replaced] + refused


# Commits in a row that fit before a shrunk transaction size doubles again.
GROW_AFTER = 10


@dataclass
class TransactionSize:
    """Messages per transaction: the batch size, halved each time a statement is
    cancelled (SQLSTATE 57014: a statement_timeout on the role, say), doubled back after
    `GROW_AFTER` commits in a row."""

    ceiling: int
    limit: int = 0
    streak: int = 0
    hooks: Hooks = field(default_factory=Hooks, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.limit = self.limit or self.ceiling

    def shrink(self, cause: StatementTimeout) -> bool:
        """Halve; False when a transaction of one message is already too slow."""
        if self.limit == 1:
            return False
        if self.limit == self.ceiling:
            self.hooks.on_transaction_shrunk(self.limit, cause)
        self.limit, self.streak = max(1, self.limit // 2), 0
        return True

    def fitted(self) -> None:
        self.streak += 1
        if self.streak >= GROW_AFTER and self.limit < self.ceiling:
            self.limit, self.streak = min(self.ceiling, self.limit * 2), 0


class _Progress:
    """One batch's writes, in transactions of at most `size.limit` messages. What has
    committed stays committed across the writer's retries: a retry goes on from there."""

    def __init__(
        self,
        sink: Sink,
        items: list[LoginRow | Rejection],
        context: Batch,
        size: TransactionSize,
    ) -> None:
        self._sink = sink
        self._items = items
        self._context = context
        self._size = size
        self._done = 0
        self._result = WriteResult(0, 0, 0)
        self._refused: list[Rejection] = []

    async def run(self) -> tuple[WriteResult, list[Rejection]]:
        while self._done < len(self._items):
            part = self._items[self._done : self._done + self._size.limit]
            try:
                result, refused = await write_isolating(
                    self._sink, *split_items(part), self._context
                )
            except StatementTimeout as cancelled:
                if not self._size.shrink(cancelled):
                    raise  # even one message at a time: retried with backoff
                continue
            self._size.fitted()
            self._result += result
            self._refused += refused
            self._done += len(part)
        return self._result, self._refused
