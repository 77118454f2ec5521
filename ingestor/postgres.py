"""The PostgreSQL boundary: the connection pool, the sink, and error classification.

Errors are classified by SQLSTATE, never by message text:
- connection loss, overload, shutdown, serialization and deadlock: `DatabaseUnavailable`;
- data and integrity errors (classes 22, 23), caused by one row: `RowRejected`;
- anything else (missing table, privileges, bad credentials): `DatabaseError`.
Exception texts carry the SQLSTATE and the error's name, never a value (it may be PII).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from ingestor.errors import DatabaseError, DatabaseUnavailable, IngestorError, RowRejected
from ingestor.ledger import ErasureLedger
from ingestor.models import (
    LOGIN_COLUMNS,
    REJECT_COLUMNS,
    VAULT_COLUMNS,
    LoginRow,
    Rejection,
    VaultEntry,
    WriteResult,
)
from ingestor.queries import query

STAGING_TABLE = "ingestor_staging"
_TRANSIENT_CLASSES = ("08", "53", "57", "58", "40")  # connection, resources, shutdown, I/O, retry
_TRANSIENT_CODES = frozenset({"55P03", "55006", "25006"})  # lock busy, object in use, read-only
_ROW_CLASSES = ("22", "23")  # data exception, integrity constraint violation


def classify(error: BaseException) -> IngestorError:
    """Map an asyncpg/OS error to the ingestor's exception tree."""
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        name = type(error).__name__
        if state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_CODES:
            return DatabaseUnavailable(f"PostgreSQL asked to retry (SQLSTATE {state}, {name})")
        if state.startswith(_ROW_CLASSES):
            return RowRejected(state, _describe(error))
        return DatabaseError(f"PostgreSQL refused the work (SQLSTATE {state}, {name})")
    return DatabaseUnavailable(f"PostgreSQL unreachable: {type(error).__name__}")


def _describe(error: asyncpg.PostgresError) -> str:
    """Name, constraint and column of a row error: enough to act on, without its values."""
    parts = [type(error).__name__]
    for attribute in ("table_name", "column_name", "constraint_name"):
        value = getattr(error, attribute, None)
        if value:
            parts.append(f"{attribute.removesuffix('_name')} {value}")
    return ", ".join(parts)


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
    await connection.execute(query("staging"))


async def create_pool(dsn: str, size: int) -> asyncpg.Pool:
    """A pool whose connections each have their staging table."""
    async with mapped_errors():
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            init=_prepare_connection,
            command_timeout=120,
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
    async with mapped_errors():
        return await asyncpg.connect(dsn, timeout=10)


class PostgresSink:
    """Commits a batch: COPY rows into staging, settle them against the erasure ledger,
    insert new vault entries, merge into user_logins, upsert rejects; all in one
    transaction. Implements `Sink`."""

    def __init__(self, pool: asyncpg.Pool, ledger: ErasureLedger) -> None:
        self._pool = pool
        self._ledger = ledger
        self._merge = query("merge_logins")
        self._reject = query("upsert_reject")
        self._unload = query("unload_rejected")
        self._vault = query("insert_vault")

    async def write(
        self,
        rows: Sequence[LoginRow],
        rejects: Sequence[Rejection],
        vault: Sequence[VaultEntry] = (),
    ) -> WriteResult:
        async with (
            mapped_errors(),
            self._pool.acquire() as connection,
            connection.transaction(),
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
        counts = await connection.fetchrow(self._merge)
        return int(counts["inserted"]), int(counts["replaced"])


def _reject_args(rejection: Rejection) -> tuple[Any, ...]:
    return tuple(getattr(rejection, column) for column in REJECT_COLUMNS)


def _columns(values: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    """Column-wise lists, for one INSERT ... SELECT FROM unnest($1, $2, ...)."""
    return [[getattr(value, name) for value in values] for name in names]
