"""The PostgreSQL boundary: the connection pool, the sink, and error classification.

Errors are classified by SQLSTATE, never by message text:
- connection loss, overload, shutdown, serialization, deadlock, a lock timeout and a
  read-only server (a failover): `DatabaseUnavailable`; a cancelled statement (57014,
  statement_timeout): `StatementTimeout`, retried with smaller transactions;
- what means the service cannot work at all (no such table or column, no privilege, a
  wrong database or credentials, no unique index to upsert on): `DatabaseError`, stop;
- a row whose partition key no partition holds (23514 with no constraint, the table
  named): `PartitionMissing`, the table's layout and not the row, never a reject; the
  sink adds the partition when it may (`partitions.py`), else the batch is retried;
- anything else: `RowRejected`. It may follow one row (a constraint, a DBA's trigger
  raising P0001, a value a column cannot hold), so the batch is bisected to find out;
  a refusal that follows every row trips the writers' breaker (`isolation.py`).
Exception texts carry the SQLSTATE, the error's name and the server's message with
anything that may be a value taken out (it may be PII).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg

from ingestor.errors import (
    DatabaseError,
    DatabaseUnavailable,
    IngestorError,
    PartitionMissing,
    RowRejected,
    StatementTimeout,
)
from ingestor.models import (
    LOGIN_COLUMNS,
    REJECT_COLUMNS,
    VAULT_COLUMNS,
    LoginRow,
    MissingPartition,
    Rejection,
    VaultEntry,
    WriteResult,
)
from ingestor.ports import Hooks, Settler
from ingestor.sink import partitions
from ingestor.sink.generated import LOGINS, STAGING_TABLE, statements
from ingestor.sink.queries import query
from ingestor.table import USER_LOGINS
from ingestor.terminal import printable

COMMAND_TIMEOUT = 120.0  # seconds a statement may take before the client gives up on it
# connection, resources, shutdown, I/O, transaction rollback (serialization, deadlock)
_TRANSIENT_CLASSES = ("08", "53", "57", "58", "40")
_TRANSIENT_CODES = frozenset({"55P03", "55006", "25006"})  # lock busy, object in use, read-only
QUERY_CANCELED = "57014"
# A CHECK constraint's violation names its constraint; a row no partition takes (or one a
# partition's bounds refuse) is 23514 with none, whatever language the server speaks.
CHECK_VIOLATION = "23514"
# The service cannot work: invalid credentials (28), no such database (3D), no privilege,
# no such table or column, no unique index matching the upsert's ON CONFLICT.
_FATAL_CLASSES = ("28", "3D")
_FATAL_CODES = frozenset({"42501", "42P01", "42703", "42P10"})
_MESSAGE_LIMIT = 200
# In a server's message: quoted text, and words with digits or the marks of addresses,
# ids and e-mail: what may be a value.
_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')
_VALUE_MARKS = re.compile(r"[0-9@:/=]")
_TRAILING = ".,;:!?)"


def classify(error: BaseException) -> IngestorError:
    """Map an asyncpg/OS error to the ingestor's exception tree."""
    if not isinstance(error, asyncpg.PostgresError):
        return DatabaseUnavailable(f"PostgreSQL unreachable: {type(error).__name__}")
    state = str(getattr(error, "sqlstate", "") or "")
    name = type(error).__name__
    if state == QUERY_CANCELED:
        return StatementTimeout(f"PostgreSQL cancelled a statement (SQLSTATE {state}, {name})")
    if state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_CODES:
        return DatabaseUnavailable(f"PostgreSQL asked to retry (SQLSTATE {state}, {name})")
    if state.startswith(_FATAL_CLASSES) or state in _FATAL_CODES:
        return DatabaseError(
            f"PostgreSQL refused the work (SQLSTATE {state}, {name}: {without_values(error)})"
        )
    table = getattr(error, "table_name", None)
    if state == CHECK_VIOLATION and table and not getattr(error, "constraint_name", None):
        return PartitionMissing(
            f"no partition of {printable(table, 64)} holds a row's create_date "
            f"(SQLSTATE {state}, {name})",
            str(table),
            detail=describe(error),
        )
    return RowRejected(state, describe(error))


def describe(error: asyncpg.PostgresError) -> str:
    """Name, constraint and column of a refusal, and the server's message without what
    may be a value: enough to act on."""
    parts = [type(error).__name__]
    for attribute in ("table_name", "column_name", "constraint_name"):
        value = getattr(error, attribute, None)
        if value:
            parts.append(f"{attribute.removesuffix('_name')} {value}")
    message = without_values(error)
    return ", ".join(parts) + (f": {message}" if message else "")


def without_values(error: asyncpg.PostgresError) -> str:
    """The server's message (never its DETAIL, which quotes the row) with every quoted
    text that is not a name the error reports, and every word with a digit, '@', ':', '/'
    or '=' in it, replaced by '…'. A trigger's RAISE may put anything in its message."""
    names = {
        str(value)
        for attribute in ("schema_name", "table_name", "column_name", "constraint_name")
        if (value := getattr(error, attribute, None))
    }

    def quoted(match: re.Match[str]) -> str:
        text = match.group(0)
        return text if text[1:-1] in names else text[0] + "…" + text[0]

    text = getattr(error, "message", None) or (error.args[0] if error.args else "")
    message = _QUOTED.sub(quoted, str(text))
    return printable(" ".join(_word(word) for word in message.split())[:_MESSAGE_LIMIT])


def _word(word: str) -> str:
    """'…' for a word that may be a value (trailing punctuation aside)."""
    core = word.rstrip(_TRAILING)
    return "…" + word[len(core) :] if _VALUE_MARKS.search(core) else word


# InternalClientError: asyncpg's protocol state broke, as when the server kills a
# connection in the middle of a COPY; the pool discards that connection, so a retry works.
_CONNECTION_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


@contextlib.asynccontextmanager
async def mapped_errors() -> AsyncIterator[None]:
    """Re-raise library errors inside the block as the ingestor's own."""
    try:
        yield
    except _CONNECTION_ERRORS as error:
        raise classify(error) from None


async def _prepare_connection(connection: asyncpg.Connection) -> None:
    await connection.execute(LOGINS.staging)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a DSN points, in the words of an error message (never its password)."""

    where: str  # host:port, or a socket folder
    database: str
    user: str

    @classmethod
    def of(cls, dsn: str) -> Target:
        parts = urlsplit(dsn)
        query_args = dict(parse_qsl(parts.query))
        user = parts.username or query_args.get("user") or getpass.getuser()
        host = parts.hostname or query_args.get("host") or "localhost"
        port = parts.port or int(query_args.get("port", 5432))
        where = f"socket {host}" if host.startswith("/") else f"{host}:{port}"
        return cls(where, parts.path.lstrip("/") or query_args.get("dbname") or user, user)


@contextlib.asynccontextmanager
async def connecting(dsn: str) -> AsyncIterator[None]:
    """Errors of connecting to `dsn`, named with what was tried: host and port, database
    and user. No answer at all is transient (a database that starts later is waited for)."""
    target = Target.of(dsn)
    try:
        yield
    except asyncpg.InvalidCatalogNameError:
        raise DatabaseError(
            f'database "{target.database}" does not exist on {target.where}'
        ) from None
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as error:
        raise DatabaseError(
            f'PostgreSQL on {target.where} refused user "{target.user}" ({printable(str(error))})'
        ) from None
    except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as error:
        raise DatabaseUnavailable(
            f"no PostgreSQL answers at {target.where} ({type(error).__name__}: "
            f"{printable(str(error))})"
        ) from None
    except _CONNECTION_ERRORS as error:
        raise classify(error) from None


async def create_pool(dsn: str, size: int) -> asyncpg.Pool:
    """A pool whose connections each have their staging table."""
    async with connecting(dsn):
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            init=_prepare_connection,
            command_timeout=COMMAND_TIMEOUT,
            server_settings={"application_name": "ingestor"},
        )
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool, grace: float = 5.0) -> None:
    """Close gracefully; a connection stuck in a query (an outage, a lock) is cut."""
    try:
        await asyncio.wait_for(pool.close(), grace)
    except (TimeoutError, *_CONNECTION_ERRORS):
        pool.terminate()


async def ping(pool: asyncpg.Pool) -> None:
    """One `SELECT 1` through the pool: does the database answer right now?"""
    async with mapped_errors():
        await pool.fetchval(query("ping"))


async def connect(dsn: str) -> asyncpg.Connection:
    async with connecting(dsn):
        return await asyncpg.connect(dsn, timeout=10)


class PostgresSink:
    """Commits a batch: COPY rows into staging, settle them against the erasure ledger,
    insert new vault entries, merge into user_logins, upsert rejects; all in one
    transaction. Implements `Sink`.

    At its first write it reads what user_logins is: range-partitioned by create_date,
    the merge upserts on (create_date, message_id). A row whose date has no partition
    makes it add one when its role may, then write the batch again; else the batch fails
    as transient (`PartitionMissing`, naming the dates) and is retried. Each such date is
    reported to `hooks` (`on_partition_missing`)."""

    def __init__(self, pool: asyncpg.Pool, ledger: Settler, hooks: Hooks | None = None) -> None:
        self._pool = pool
        self._ledger = ledger
        self._hooks = hooks or Hooks()
        self._merge: str | None = None  # chosen at the first write, by the table's layout
        self._reject = query("upsert_reject")
        self._unload = query("unload_rejected")
        self._vault = query("insert_vault")

    async def write(
        self,
        rows: Sequence[LoginRow],
        rejects: Sequence[Rejection],
        vault: Sequence[VaultEntry] = (),
    ) -> WriteResult:
        try:
            return await self._write(rows, rejects, vault)
        except PartitionMissing as missing:
            await self._provide(rows, missing)
        return await self._write(rows, rejects, vault)

    async def _write(
        self,
        rows: Sequence[LoginRow],
        rejects: Sequence[Rejection],
        vault: Sequence[VaultEntry],
    ) -> WriteResult:
        async with (
            mapped_errors(),
            self._pool.acquire() as connection,
            connection.transaction(),
            _timeouts_split(),
        ):
            if rows:
                await connection.copy_records_to_table(
                    STAGING_TABLE, records=rows, columns=LOGIN_COLUMNS
                )
            settled = await self._ledger.settle(connection, rows, rejects, vault)
            if settled.vault:
                await connection.execute(self._vault, *_columns(settled.vault, VAULT_COLUMNS))
            inserted, replaced = await self._merge_rows(connection, rows)
            if settled.rejects:
                args = [_reject_args(r) for r in settled.rejects]
                await connection.executemany(self._reject, args)
                await connection.execute(self._unload, [r.message_id for r in settled.rejects])
        return WriteResult(inserted, replaced, len(rejects))

    async def _merge_rows(self, connection: Any, rows: Sequence[LoginRow]) -> tuple[int, int]:
        if not rows:
            return 0, 0
        if self._merge is None:
            self._merge = await self._merge_for(connection)
        counts = await connection.fetchrow(self._merge)
        return int(counts["inserted"]), int(counts["replaced"])

    async def _merge_for(self, connection: Any) -> str:
        """The merge for what user_logins is: range-partitioned by create_date, its
        conflict target holds the partition key."""
        layout = await partitions.read_layout(connection, USER_LOGINS.name, USER_LOGINS.date)
        if layout.kind == "other":
            raise DatabaseError(layout.unsupported())
        target = USER_LOGINS.partitioned_key if layout.partitioned else None
        return statements(USER_LOGINS, target).merge

    async def _provide(self, rows: Sequence[LoginRow], missing: PartitionMissing) -> None:
        """After a row found no partition of user_logins: add what the batch's dates need,
        or report why not and fail the batch as transient. Returns when the batch may be
        written again (partitions added, by this copy or another meanwhile). A partition
        that refused a row itself (its bounds, after a trigger changed the row's date) is
        a refusal of that row: bisected, as any other."""
        if missing.table != USER_LOGINS.name:
            raise RowRejected(CHECK_VIOLATION, missing.detail or str(missing))
        days = {row.create_date for row in rows}
        try:
            async with mapped_errors(), self._pool.acquire() as connection:
                events = await partitions.provide(connection, missing.table, days, USER_LOGINS.date)
        except RowRejected as refused:  # the catalogs refused a question: never the row's fault
            raise PartitionMissing(
                f"{missing}; reading the partitions of {missing.table} failed: {refused.detail}",
                missing.table,
            ) from None
        for event in events:
            self._hooks.on_partition_missing(event)
        waiting = [event for event in events if not event.created]
        if waiting:
            raise PartitionMissing(waiting_message(waiting), missing.table, _days(waiting))


def waiting_message(waiting: Sequence[MissingPartition]) -> str:
    """The one line that says which dates wait for a partition, why, and what to do."""
    first = waiting[0]
    days = ", ".join(event.day.isoformat() for event in waiting)
    fix = f": {first.statement()}" if first.statement() else ""
    return (
        f"no partition of {first.table} holds {days} and it has no DEFAULT partition; "
        f"ingestor adds none ({first.problem}). The batch waits and is retried, nothing is "
        f"rejected or lost, until a partition holds it{fix}"
    )


def _days(events: Sequence[MissingPartition]) -> tuple[dt.date, ...]:
    return tuple(event.day for event in events)


@contextlib.asynccontextmanager
async def _timeouts_split() -> AsyncIterator[None]:
    """A statement that outlived the client's command timeout is a transaction too big
    (or a database too slow) for it, as a server's statement_timeout: written smaller."""
    try:
        yield
    except TimeoutError:
        raise StatementTimeout(
            f"PostgreSQL did not answer within the command timeout ({COMMAND_TIMEOUT:.0f} s)"
        ) from None


def _reject_args(rejection: Rejection) -> tuple[Any, ...]:
    return tuple(getattr(rejection, column) for column in REJECT_COLUMNS)


def _columns(values: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    """Column-wise lists, for one INSERT ... SELECT FROM unnest($1, $2, ...)."""
    return [[getattr(value, name) for value in values] for name in names]
