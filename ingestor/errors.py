"""The exception tree.

Everything the ingestor raises on purpose derives from `IngestorError`, split by what the
caller should do about it: `PermanentError` (retrying cannot help) and `TransientError`
(retry with backoff; the message stays on the queue meanwhile). Library errors are mapped
to these at the boundary (`source/sqs_errors.py`, `sink/postgres.py`), so the pipeline
never inspects botocore or asyncpg exceptions. Messages never carry message content, only its shape.
"""

from __future__ import annotations

import datetime as dt


class IngestorError(Exception):
    """Root of every error the ingestor raises on purpose."""


class ConfigError(IngestorError):
    """Bad settings: one (variable, problem) per bad or missing variable, all at once.
    `variable` and `problem` name the first."""

    def __init__(self, variable: str, problem: str, *more: tuple[str, str]) -> None:
        self.problems: tuple[tuple[str, str], ...] = ((variable, problem), *more)
        super().__init__("; ".join(f"{name}: {text}" for name, text in self.problems))
        self.variable = variable
        self.problem = problem

    @property
    def lines(self) -> list[str]:
        """One line per bad or missing variable."""
        return [f"{name}: {text}" for name, text in self.problems]


class PermanentError(IngestorError):
    """Retrying the same thing will fail the same way."""


class RowRejected(PermanentError):
    """The database refused the work for a reason that may follow one row (a constraint,
    a trigger, a value a column cannot hold): the batch is bisected, and a row that is
    refused on its own becomes a `db_<SQLSTATE>` reject."""

    def __init__(self, sqlstate: str, detail: str) -> None:
        super().__init__(f"database refused the row (SQLSTATE {sqlstate}): {detail}")
        self.sqlstate = sqlstate
        self.detail = detail


class DatabaseError(PermanentError):
    """The database refuses the work itself (missing table, no privilege, bad credentials)."""


class QueueError(PermanentError):
    """The queue refuses the work itself (no such queue, access denied)."""


class QueueGone(QueueError):
    """The queue does not exist (any more): deleted, or the URL or region is wrong."""


class TransientError(IngestorError):
    """Worth retrying after a pause: an outage, a timeout, a lost connection, a deadlock."""


class DatabaseUnavailable(TransientError):
    """PostgreSQL cannot be reached or asked us to retry."""


class PartitionMissing(DatabaseUnavailable):
    """A row's create_date falls in no partition of a partitioned user_logins that has no
    DEFAULT partition: the table's layout, not the row, so never a reject. The sink creates
    the partition when its role may (`sink/partitions.py`); else the batch is retried
    until one exists. `table` is the partitioned table; `days`, the dates with none (empty
    when only the server's error is known); `detail`, the server's error as a reject would
    describe it (a partition's own bounds refusing a row a trigger changed is one)."""

    def __init__(
        self, message: str, table: str, days: tuple[dt.date, ...] = (), detail: str = ""
    ) -> None:
        super().__init__(message)
        self.table = table
        self.days = days
        self.detail = detail


class StatementTimeout(DatabaseUnavailable):
    """A statement was cancelled (SQLSTATE 57014: statement_timeout, or a DBA's cancel):
    the transaction is retried smaller."""


class QueueUnavailable(TransientError):
    """SQS cannot be reached, throttled us, or answered something that is not an answer."""


class StaleCredentials(QueueUnavailable):
    """SQS says the credentials expired (`expired`), or the signature's time is off: the
    credentials are refreshed before the retry."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class DrainIncomplete(IngestorError):
    """`run --drain` ended before the queue was empty (a signal, or messages still held by
    another consumer after waiting for them): run it again (exit code 3)."""
