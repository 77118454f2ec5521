"""Values that flow between the stages. All immutable."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from ingestor.table import USER_LOGINS

# What may wrap the event in an SQS body (INGESTOR_ENVELOPE): recognised by shape
# ("auto"), never ("none"), or always expected.
Wrapping = Literal["auto", "none", "sns", "eventbridge"]
# How `migrate` partitions a user_logins it creates (INGESTOR_PARTITION_BY).
PartitionBy = Literal["none", "month"]


class Envelope(NamedTuple):
    """One SQS message as received: what the transform needs, plus what the ack needs.
    A NamedTuple, like `LoginRow` and `Processed`: immutable, and made per message, where a
    frozen dataclass's __init__ costs three times as much."""

    message_id: str
    receipt_handle: str
    body: str | bytes
    sent_timestamp_ms: int
    receive_count: int = 1


class LoginRow(NamedTuple):
    """One row of `user_logins`, in the column order of `LOGIN_COLUMNS` (a tuple for COPY).
    Written out for mypy; a unit test holds its fields to the registry's columns."""

    message_id: str
    user_id: str
    device_type: str | None
    masked_ip: str | None
    masked_device_id: str | None
    locale: str | None
    app_version: int | None
    create_date: dt.date


LOGIN_COLUMNS: tuple[str, ...] = USER_LOGINS.column_names


@dataclass(frozen=True, slots=True)
class VaultEntry:
    """One distinct PII value, sealed, under the token that stands for it in the tables."""

    token: str
    field: str
    sealed: bytes
    key_id: str  # the vault key pair it is sealed to
    mask_key_id: str  # the HMAC key the token was made with


VAULT_COLUMNS: tuple[str, ...] = ("token", "field", "sealed", "key_id", "mask_key_id")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that will not become a row, with a reason a person can act on.

    `body` is what is known to be safe of a JSON object (see `rejects.py`; the tokens of
    its ip and device_id in `pii_tokens`), or None when the body is not a JSON object
    (then only its kind, size and keyed digest are kept). With the vault on, `sealed_body`
    is the original body sealed to the vault key `key_id`, so `rejects replay` can run it
    through today's rules. `user_digest` is the keyed digest of its user_id, when it has
    one: `forget --user-id` finds it by that.
    """

    message_id: str
    reason_code: str
    reason: str
    body: str | None
    body_kind: str
    body_bytes: int
    body_digest: str
    sent_at: dt.datetime
    receive_count: int
    pii_tokens: tuple[str, ...] = ()
    sealed_body: bytes | None = None
    key_id: str | None = None
    user_digest: str | None = None


REJECT_COLUMNS: tuple[str, ...] = (
    "message_id",
    "reason_code",
    "reason",
    "body",
    "body_kind",
    "body_bytes",
    "body_digest",
    "sent_at",
    "receive_count",
    "pii_tokens",
    "sealed_body",
    "key_id",
    "user_digest",
)


class Processed(NamedTuple):
    """A message after the transform: its row or its rejection, the values it sealed, and
    the handle to delete it. `message_id` is the key its row or reject is stored under:
    the SQS MessageId, or the id of the SNS/EventBridge envelope around the event (two SQS
    messages may then share it, each with its own receipt handle)."""

    message_id: str
    receipt_handle: str
    outcome: LoginRow | Rejection
    sent_timestamp_ms: int
    receive_count: int
    vault: tuple[VaultEntry, ...] = ()  # values this message sealed, for the same commit


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed batch did."""

    inserted: int
    replaced: int
    rejected: int
    rejected_by_db: int = 0

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.inserted + other.inserted,
            self.replaced + other.replaced,
            self.rejected + other.rejected,
            self.rejected_by_db + other.rejected_by_db,
        )


@dataclass(frozen=True, slots=True)
class SqsBatchResult:
    """What an SQS batch call over receipt handles did: how many succeeded, which failed
    (receipt handle, error code)."""

    succeeded: int
    failed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """One entry of an SQS batch call that failed: its receipt handle, SQS's code, and
    whether SQS says the fault is its own (`SenderFault` false: worth another try)."""

    handle: str
    code: str
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """The queue's size as SQS approximates it: messages waiting (visible), messages
    received by some consumer and not yet deleted (in flight, invisible), and messages
    sent with a delay that has not run out."""

    visible: int
    in_flight: int
    delayed: int = 0  # sent with a delay, not visible yet

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(frozen=True, slots=True)
class QueueAttributes:
    """What the service reads of its queue at start-up: its depth and its own
    VisibilityTimeout (seconds)."""

    depth: QueueDepth
    visibility_timeout: int


@dataclass(frozen=True, slots=True)
class Settled:
    """A batch as it may be written: rejects and vault entries without erased values."""

    rejects: Sequence[Rejection]
    vault: Sequence[VaultEntry]


@dataclass(frozen=True, slots=True)
class Buffered:
    """What waits in the two internal queues, in items of up to 10 messages (one receive
    each), and how many items each may hold."""

    received: int
    processed: int
    capacity: int


@dataclass(frozen=True, slots=True)
class MissingPartition:
    """A row's date had no partition of the range-partitioned `table` (and it has no
    DEFAULT partition). `created`: `partition` was added for it, for `span`. Otherwise
    `problem` says why none was (the batch waits and is retried), and `partition` and
    `span` are the one to add, when the neighbouring partitions give an interval."""

    table: str
    day: dt.date
    partition: str = ""
    span: tuple[dt.date, dt.date] | None = None
    created: bool = False
    problem: str = ""

    def statement(self) -> str:
        """The statement that would add the partition (empty when no interval is known)."""
        if self.span is None:
            return ""
        lower, upper = (day.isoformat() for day in self.span)
        return (
            f"CREATE TABLE {self.partition} PARTITION OF {self.table} "
            f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
        )
