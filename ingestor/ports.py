"""Every seam in one place: what each stage needs of the others, as Protocols.

Production plugs in SQS (`source/`), PostgreSQL (`sink/`), the HMAC masker or the vault
(`transform/`, `custody/`) and the observers (`observe/`); unit tests plug in fakes
(`tests/fakes.py`). Nothing here imports a stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Sized
from typing import Any, Protocol

from ingestor.errors import IngestorError
from ingestor.models import (
    Buffered,
    EntryFailure,
    Envelope,
    LoginRow,
    MissingPartition,
    Processed,
    QueueDepth,
    Rejection,
    Settled,
    SqsBatchResult,
    VaultEntry,
    WriteResult,
)

# --- the queue --------------------------------------------------------------------------


class DepthSource(Protocol):
    async def depths(self) -> QueueDepth: ...


class BatchCalls(Protocol):
    """The two batch calls of a queue client (at most 10 handles each)."""

    async def delete_batch(self, handles: Sequence[str]) -> tuple[EntryFailure, ...]: ...

    async def change_visibility_batch(
        self, handles: Sequence[str], seconds: int
    ) -> tuple[EntryFailure, ...]: ...


class QueueClient(BatchCalls, DepthSource, Protocol):
    """The seam to the queue: SQS in production, an in-memory fake in unit tests. Each
    method is one SQS call (the batch calls take at most 10 handles: `source/acks.py` runs
    them over more, with their retries)."""

    async def receive(
        self, wait_seconds: int, visibility_timeout: int | None
    ) -> list[Envelope]: ...


# --- the transform ----------------------------------------------------------------------


class Masker(Protocol):
    """What the transform needs to mask a value. Inputs are already validated."""

    def masking(self, field: str) -> Callable[[str], str]:
        """The function that masks a value of the PII field `field` (as the table's
        registry names it, `ingestor/table.py`), given in its canonical spelling: fetch it
        once, call it per value. Raises `UnknownField` for a field not registered: a value
        is never masked under another field's domain."""
        ...

    def digest_body(self, body: bytes) -> str: ...

    def digest_user(self, user_id: str) -> str:
        """A keyed digest of a user id: what ties a reject to its user for erasure,
        without storing who asked to be erased in plaintext."""
        ...

    def seal_body(self, body: bytes) -> tuple[bytes, str] | None:
        """The body sealed to the vault key, and that key's id; None without a vault."""
        ...

    def take(self) -> tuple[VaultEntry, ...]:
        """The vault entries made since the last call (one message's): always empty
        without a vault."""
        ...


# --- the database -----------------------------------------------------------------------


class Sink(Protocol):
    """The seam to the database: commits rows, rejects and vault entries in one
    transaction, or raises `RowRejected` (a row was refused), a `TransientError` or a
    `PermanentError`."""

    async def write(
        self,
        rows: Sequence[LoginRow],
        rejects: Sequence[Rejection],
        vault: Sequence[VaultEntry] = (),
    ) -> WriteResult: ...


class Settler(Protocol):
    """What the sink asks of PII custody inside a batch's transaction, once its rows are
    staged: erased values become tombstones and stay out of the vault."""

    async def settle(
        self,
        connection: Any,
        rows: Sequence[LoginRow],
        rejects: Sequence[Rejection],
        vault: Sequence[VaultEntry],
    ) -> Settled: ...


class Digests(Protocol):
    """The keyed digests the erasure ledger is kept in (a masker has them)."""

    def digest_user(self, user_id: str) -> str: ...

    def digest_erased(self, user_digest: str, token: str) -> str: ...


class Buffers(Protocol):
    """What the gauges read of a running pipeline at each scrape."""

    @property
    def inflight(self) -> Sized: ...

    def buffered(self) -> Buffered: ...


# --- observers --------------------------------------------------------------------------


class Hooks:
    """What the stages report, one method per event. This no-op base is the whole list of
    events: observers (`observe/`) override what they watch, and `HookChain` fans each
    event out to them, so a new event is one method here. A hook must be cheap (it runs
    on the hot path, once per batch) and is never given plaintext PII."""

    def on_state(self, state: str) -> None:
        """The service's life: starting (migrating, connecting), running (ready),
        draining (stop requested: finishing in-flight work), stopped."""

    def on_received(self, count: int) -> None:
        """A receive call returned `count` messages."""

    def on_written(
        self, result: WriteResult, rejections: Sequence[Rejection], seconds: float
    ) -> None:
        """A batch was committed."""

    def on_committed(self, batch: Sequence[Processed]) -> None:
        """These messages are committed (for lag: now - their sent_timestamp_ms)."""

    def on_deleted(self, result: SqsBatchResult) -> None:
        """A committed batch's messages were deleted from the queue (or failed to be)."""

    def on_released(self, result: SqsBatchResult) -> None:
        """Uncommitted messages were made visible again (on an abort)."""

    def on_not_released(self, count: int, why: str) -> None:
        """`count` uncommitted messages could not be handed back on shutdown: they come
        back after their visibility timeout."""

    def on_shutdown_timeout(self, timeout: float, held: int) -> None:
        """A stop's shutdown timeout ran out with `held` messages still uncommitted."""

    def on_transaction_shrunk(self, size: int, cause: IngestorError) -> None:
        """A transaction of `size` messages was cancelled (a statement timeout): the
        writers commit smaller ones until they fit, then grow back."""

    def on_extended(self, result: SqsBatchResult) -> None:
        """The heartbeat extended the visibility of messages still in flight."""

    def on_retry(self, stage: str, error: IngestorError, attempt: int, delay: float) -> None:
        """A failure in `stage` ('receive', 'write', 'delete', 'heartbeat', 'startup') will
        be retried."""

    def on_recovered(self, stage: str) -> None:
        """`stage` works again after transient failures."""

    def on_queue_depth(self, depth: QueueDepth) -> None:
        """The queue's depth was sampled (every few seconds, not per message)."""

    def on_partition_missing(self, missing: MissingPartition) -> None:
        """A row's date had no partition of the range-partitioned user_logins: the sink
        added one (`missing.created`), or it may not and the batch waits for one (it is
        retried; nothing is rejected)."""

    def on_gave_up(self, stage: str) -> None:
        """`stage` ran out of retries for one operation (deletes do: SQS redelivers those
        messages). Its outage is over as far as that operation goes; the next failure
        starts a new one."""
