"""The write stage: batch processed messages, commit them, then delete them from the queue.

A batch is flushed when it reaches `batch_size` or `flush_interval` after its first message.
Its rows and rejects commit in one transaction through the `Sink`; only then are its
messages deleted (PRODUCT.md rule 5). Rows the database refuses are isolated as rejects
(`isolation.py`) and the rest of the batch commits (rule 7); a failed delete never fails the
pipeline (the message comes back and upserts onto its row).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ingestor.errors import DatabaseError, IngestorError
from ingestor.hooks import Hooks
from ingestor.inflight import InFlight
from ingestor.isolation import Batch, Digest, Sink, write_isolating
from ingestor.models import (
    BatchResult,
    LoginRow,
    Processed,
    Rejection,
    VaultEntry,
    WriteResult,
)
from ingestor.retry import FEW_RETRIES, RETRY_FOREVER, Backoff, observed
from ingestor.source import QueueClient

log = logging.getLogger("ingestor")


@dataclass(frozen=True, slots=True)
class WriterConfig:
    batch_size: int
    flush_interval: float
    write_backoff: Backoff = RETRY_FOREVER
    delete_backoff: Backoff = FEW_RETRIES
    # Deletes of committed batches still going while the writer commits the next ones.
    # Deleting 2,000 messages takes 13 round trips (16 calls of 10 at a time): awaited in
    # line, that alone held a writer to ~7,700 msg/s at a 20 ms round trip.
    pending_deletes: int = 2


class BatchWriter:
    """One writer; several may run, each committing its own batches."""

    def __init__(
        self,
        *,
        inbox: asyncio.Queue[list[Processed] | None],
        sink: Sink,
        queue: QueueClient,
        inflight: InFlight,
        hooks: Hooks,
        config: WriterConfig,
        digest: Digest,
    ) -> None:
        self._inbox = inbox
        self._sink = sink
        self._queue = queue
        self._inflight = inflight
        self._hooks = hooks
        self._config = config
        self._digest = digest
        self._deleting: set[asyncio.Task[None]] = set()
        self._delete_slots = asyncio.Semaphore(config.pending_deletes)

    async def run(self) -> None:
        """Flush batches until the end-of-stream marker (None) arrives; each batch's
        deletes go on in the background (at most `pending_deletes` at once) while the next
        batch is collected and committed. Returns once every delete has finished."""
        ended = False
        try:
            while not ended:
                batch, ended = await self.collect()
                if batch:
                    await self.flush(batch, delete_in_background=True)
        except asyncio.CancelledError:
            for task in self._deleting:  # stopping now: SQS redelivers, the upsert absorbs it
                task.cancel()
            raise
        finally:
            await asyncio.gather(*self._deleting, return_exceptions=True)

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
        context = Batch(batch, self._digest, vault_entries(batch))
        started = time.perf_counter()
        result, refused = await observed(
            "write",
            lambda: write_isolating(self._sink, rows, rejects, context),
            self._config.write_backoff,
            self._hooks,
        )
        handles = [item.receipt_handle for item in batch]
        self._inflight.committed(handles)
        self._hooks.on_written(result, _as_stored(rejects, refused), time.perf_counter() - started)
        self._hooks.on_committed(batch)
        if delete_in_background:
            await self._start_delete(handles)
        else:
            await self._delete(handles)
        if len(rows) > 1 and result.rejected_by_db >= len(rows):
            # Every row refused is a table ingestor cannot write to, not a poison message:
            # stop before the whole queue turns into rejects (these are kept, with reasons).
            raise DatabaseError(
                f"PostgreSQL refused every row of a batch ({refused[0].reason}); "
                "check user_logins for a constraint or column ingestor cannot fill"
            )
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
            log.error("delete failed unexpectedly", exc_info=task.exception())

    async def _delete(self, handles: list[str]) -> None:
        """Delete committed messages. This never fails the pipeline: the rows are safe,
        and a message that stays on the queue is redelivered and upserts onto its row."""
        try:
            deleted = await observed(
                "delete",
                lambda: self._queue.delete(handles),
                self._config.delete_backoff,
                self._hooks,
            )
        except IngestorError as error:
            deleted = BatchResult(0, tuple((handle, type(error).__name__) for handle in handles))
        self._hooks.on_deleted(deleted)


def split_outcomes(batch: Sequence[Processed]) -> tuple[list[LoginRow], list[Rejection]]:
    """Rows (one per message id: a message redelivered within one batch is written once)
    and rejects, in that order."""
    rows: dict[str, LoginRow] = {}
    rejects: dict[str, Rejection] = {}
    for item in batch:
        outcome = item.outcome
        if type(outcome) is LoginRow:
            rows[item.message_id] = outcome
        else:
            rejects[item.message_id] = outcome  # type: ignore[assignment]
    return list(rows.values()), list(rejects.values())


def vault_entries(batch: Sequence[Processed]) -> list[VaultEntry]:
    """The batch's sealed values, one per token."""
    entries = {entry.token: entry for item in batch for entry in item.vault}
    return list(entries.values())


def _as_stored(rejects: list[Rejection], refused: list[Rejection]) -> list[Rejection]:
    """The rejects as committed: one the database refused counts once, as its replacement."""
    replaced = {r.message_id for r in refused}
    return [r for r in rejects if r.message_id not in replaced] + refused
