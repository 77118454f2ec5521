"""Isolating what the database refuses (PRODUCT.md rule 7: one poison message never fails
its batch).

When PostgreSQL refuses a batch for a reason that may follow one row (`RowRejected`: a
constraint a DBA added, a narrowed column, a trigger that raises), the batch is bisected
until each refused row or reject stands alone; that one becomes a `db_<SQLSTATE>` reject
and everything else commits.

A refusal that follows every row is not a poison message but a table the service cannot
write (a NOT NULL column without a default, a trigger that refuses everything): the
`Breaker`, shared by the writers, counts refused rows in a row with one SQLSTATE, across
batches and whatever their size, and stops the service before the queue turns into
rejects. Those already stored are kept with their reasons; `rejects replay` loads them
once the table is fixed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingestor.errors import DatabaseError, RowRejected
from ingestor.models import LoginRow, Processed, Rejection, VaultEntry, WriteResult
from ingestor.ports import Sink
from ingestor.table import USER_LOGINS, Table

Digest = Callable[[bytes], str]
# Refused rows in a row, with one SQLSTATE and no row accepted in between, that mean the
# table refuses everything: more than one SQS batch (10: a producer's one bad
# SendMessageBatch arrives together), and few enough that a batch is not all turned into
# rejects, nor a quiet queue's whole trickle.
BREAKER_THRESHOLD = 12


class Breaker:
    """Counts rows refused in a row with one SQLSTATE, across batches and writers; raises
    `DatabaseError` at the threshold. Any accepted row resets it."""

    def __init__(self, threshold: int = BREAKER_THRESHOLD) -> None:
        self._threshold = threshold
        self._state = ""
        self._messages: set[str] = set()  # each counted once, whatever its retries

    def accepted(self) -> None:
        self._state, self._messages = "", set()

    def refused(self, refused: RowRejected, message_id: str) -> None:
        if refused.sqlstate != self._state:
            self._state, self._messages = refused.sqlstate, set()
        self._messages.add(message_id)
        if (count := len(self._messages)) >= self._threshold:
            raise DatabaseError(
                f"PostgreSQL refused {count} rows in a row (SQLSTATE "
                f"{refused.sqlstate}; {refused.detail}): user_logins has a constraint, "
                "trigger or column ingestor cannot fill. The refused rows are kept in "
                f"ingestor_rejects as db_{refused.sqlstate}; once the table is fixed, "
                "`ingestor rejects replay` loads them"
            )


@dataclass(frozen=True, slots=True)
class Batch:
    """What isolation needs besides the rows and rejects: the processed messages (for a
    refused row's metadata), the keyed digest, the batch's vault entries (each part takes
    those of its own tokens; a refused row's tokens stay revealable in its reject), and
    the breaker."""

    items: Sequence[Processed]
    digest: Digest
    vault: Sequence[VaultEntry] = ()
    breaker: Breaker = field(default_factory=Breaker)
    table: Table = USER_LOGINS  # whose PII columns hold a row's tokens


async def write_isolating(
    sink: Sink, rows: Sequence[LoginRow], rejects: Sequence[Rejection], batch: Batch
) -> tuple[WriteResult, list[Rejection]]:
    """Write; on a refusal that may follow one row, bisect and reject what the database
    refuses. Returns the result and the rejections the database caused."""
    try:
        whole = len(rows) + len(rejects) >= len(batch.items)  # nothing to leave out
        vault = batch.vault if whole else _vault_of(rows, rejects, batch.vault, batch.table)
        result = await sink.write(rows, rejects, vault)
    except RowRejected as refused:
        items: list[LoginRow | Rejection] = [*rows, *rejects]
        if len(items) == 1:
            batch.breaker.refused(refused, items[0].message_id)
            return await _write_refused(sink, items[0], refused, batch)
    else:
        if rows:
            batch.breaker.accepted()
        return result, []
    middle = len(items) // 2
    left, left_refused = await write_isolating(sink, *split_items(items[:middle]), batch)
    right, right_refused = await write_isolating(sink, *split_items(items[middle:]), batch)
    return left + right, left_refused + right_refused


def _vault_of(
    rows: Sequence[LoginRow],
    rejects: Sequence[Rejection],
    vault: Sequence[VaultEntry],
    table: Table = USER_LOGINS,
) -> Sequence[VaultEntry]:
    """The entries of the tokens these rows and rejects hold (all of them for a whole
    batch: a part of a bisected one need not insert its siblings' again)."""
    if not vault:
        return vault
    tokens = {t for row in rows for t in table.tokens(row) if t}
    tokens.update(t for reject in rejects for t in reject.pii_tokens)
    return [entry for entry in vault if entry.token in tokens]


def split_items(
    items: Sequence[LoginRow | Rejection],
) -> tuple[list[LoginRow], list[Rejection]]:
    # Told apart by the reject's type: a row is any tuple of the table's columns.
    rows = [item for item in items if not isinstance(item, Rejection)]
    return rows, [item for item in items if isinstance(item, Rejection)]


async def _write_refused(
    sink: Sink, item: LoginRow | Rejection, refused: RowRejected, batch: Batch
) -> tuple[WriteResult, list[Rejection]]:
    if isinstance(item, Rejection):  # even the reject was refused: keep what surely fits,
        replacement = refused_reject(item, refused)  # without the body
    else:
        source = _source(item.message_id, batch.items)
        replacement = refused_row(item, refused, source, batch.digest, batch.table)
    try:
        result = await sink.write(
            [], [replacement], _vault_of([], [replacement], batch.vault, batch.table)
        )
    except RowRejected as again:
        raise DatabaseError(f"the rejects table refuses even a minimal row: {again}") from None
    return WriteResult(0, 0, result.rejected, 1), [replacement]


def _source(message_id: str, batch: Sequence[Processed]) -> Processed:
    return next(item for item in batch if item.message_id == message_id)


def refused_row(
    row: LoginRow,
    refused: RowRejected,
    source: Processed,
    digest: Digest,
    table: Table = USER_LOGINS,
) -> Rejection:
    """A valid row the database refused, as a reject (its fields are already masked): its
    body the row by column name, its PII columns' tokens listed."""
    fields: dict[str, Any] = dict(zip(table.column_names, row, strict=True))
    body = orjson.dumps(fields).decode()
    tokens = tuple(token for token in table.tokens(row) if token)
    return Rejection(
        message_id=fields[table.key],
        reason_code=f"db_{refused.sqlstate}",
        reason=str(refused),
        body=body,
        body_kind="row",
        body_bytes=len(body),
        body_digest=digest(body.encode()),
        sent_at=dt.datetime.fromtimestamp(source.sent_timestamp_ms / 1000, dt.UTC),
        receive_count=source.receive_count,
        pii_tokens=tokens,
    )


def refused_reject(rejection: Rejection, refused: RowRejected) -> Rejection:
    return Rejection(
        message_id=rejection.message_id,
        reason_code=f"db_{refused.sqlstate}",
        reason=f"{rejection.reason_code}; then {refused}",
        body=None,
        body_kind=rejection.body_kind,
        body_bytes=rejection.body_bytes,
        body_digest=rejection.body_digest,
        sent_at=rejection.sent_at,
        receive_count=rejection.receive_count,
        # The tokens stay listed: the sealed original holds their values, and erasure
        # finds it through them.
        pii_tokens=rejection.pii_tokens,
        sealed_body=rejection.sealed_body,
        key_id=rejection.key_id,
        user_digest=rejection.user_digest,  # and erasure by user finds it by this
    )


def split_outcomes(batch: Sequence[Processed]) -> tuple[list[LoginRow], list[Rejection]]:
    """Rows (one per message id: a message redelivered within one batch is written once)
    and rejects, in that order."""
    rows: dict[str, LoginRow] = {}
    rejects: dict[str, Rejection] = {}
    for item in batch:
        outcome = item.outcome
        if type(outcome) is Rejection:
            rejects[item.message_id] = outcome
        else:
            rows[item.message_id] = outcome  # type: ignore[assignment]
    return list(rows.values()), list(rejects.values())


def vault_entries(batch: Sequence[Processed]) -> list[VaultEntry]:
    """The batch's sealed values, one per token."""
    entries = {entry.token: entry for item in batch for entry in item.vault}
    return list(entries.values())
