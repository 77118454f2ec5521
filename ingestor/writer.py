"""The write stage: batch processed messages, commit them, then delete them from the queue.

A batch is flushed when it reaches `batch_size` or `flush_interval` after its first message.
Its rows and rejects commit in one transaction through the `Sink`; only then are its
messages deleted (PRODUCT.md rule 5). A row the database refuses is isolated by bisecting
the batch and becomes a reject with its SQLSTATE; the rest of the batch commits (rule 7).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from ingestor.errors import DatabaseError, RowRejected
from ingestor.hooks import Hooks
from ingestor.inflight import InFlight
from ingestor.models import LoginRow, Processed, Rejection, WriteResult
from ingestor.retry import FEW_RETRIES, RETRY_FOREVER, Backoff, observed
from ingestor.source import QueueClient


class Sink(Protocol):
    """The seam to the database: commits rows and rejects in one transaction, or raises
    `RowRejected` (a row was refused), a `TransientError` or a `PermanentError`."""

    async def write(
        self, rows: Sequence[LoginRow], rejects: Sequence[Rejection]
    ) -> WriteResult: ...


@dataclass(frozen=True, slots=True)
class WriterConfig:
    batch_size: int
    flush_interval: float
    write_backoff: Backoff = RETRY_FOREVER
    delete_backoff: Backoff = FEW_RETRIES


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
    ) -> None:
        self._inbox = inbox
        self._sink = sink
        self._queue = queue
        self._inflight = inflight
        self._hooks = hooks
        self._config = config

    async def run(self) -> None:
        """Flush batches until the end-of-stream marker (None) arrives."""
        ended = False
        while not ended:
            batch, ended = await self.collect()
            if batch:
                await self.flush(batch)

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
        """The next item, or TimeoutError after `remaining` seconds (inf: no limit)."""
        if remaining == float("inf"):
            return await self._inbox.get()
        if remaining <= 0:
            raise TimeoutError
        return await asyncio.wait_for(self._inbox.get(), remaining)

    async def flush(self, batch: list[Processed]) -> WriteResult:
        """Commit `batch`, then delete its messages from the queue."""
        rows, rejects = split_outcomes(batch)
        started = time.perf_counter()
        result, refused = await observed(
            "write",
            lambda: write_isolating(self._sink, rows, rejects, batch),
            self._config.write_backoff,
            self._hooks,
        )
        handles = [item.receipt_handle for item in batch]
        self._inflight.committed(handles)
        self._hooks.on_written(result, [*rejects, *refused], time.perf_counter() - started)
        deleted = await observed(
            "delete", lambda: self._queue.delete(handles), self._config.delete_backoff, self._hooks
        )
        self._hooks.on_deleted(deleted)
        return result


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


async def write_isolating(
    sink: Sink,
    rows: Sequence[LoginRow],
    rejects: Sequence[Rejection],
    batch: Sequence[Processed],
) -> tuple[WriteResult, list[Rejection]]:
    """Write; when the database refuses a row, bisect until the refused rows are alone,
    reject each with its SQLSTATE, and commit everything else. Returns the result and the
    rejections the database caused."""
    try:
        return await sink.write(rows, rejects), []
    except RowRejected as refused:
        if len(rows) == 1:
            rejection = _refused(rows[0], refused, batch)
            result = await sink.write([], [*rejects, rejection])
            return WriteResult(0, 0, result.rejected, 1), [rejection]
        if not rows:
            raise DatabaseError(f"the rejects table refused a row: {refused}") from None
    middle = len(rows) // 2
    left, left_refused = await write_isolating(sink, rows[:middle], rejects, batch)
    right, right_refused = await write_isolating(sink, rows[middle:], [], batch)
    return left + right, left_refused + right_refused


def _refused(row: LoginRow, refused: RowRejected, batch: Sequence[Processed]) -> Rejection:
    source = next(item for item in batch if item.message_id == row.message_id)
    body = orjson.dumps(row._asdict()).decode()  # already masked: no plaintext PII
    return Rejection(
        message_id=row.message_id,
        reason_code=f"db_{refused.sqlstate}",
        reason=str(refused),
        body=body,
        body_kind="row",
        body_bytes=len(body),
        body_digest=hashlib.sha256(body.encode()).hexdigest(),
        sent_at=dt.datetime.fromtimestamp(source.sent_timestamp_ms / 1000, dt.UTC),
        receive_count=source.receive_count,
    )
