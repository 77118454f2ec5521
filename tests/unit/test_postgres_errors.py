"""Postgres errors are classified by SQLSTATE, and their texts carry no values."""

from __future__ import annotations

import asyncpg
import pytest

from ingestor.errors import DatabaseError, DatabaseUnavailable, RowRejected, StatementTimeout
from ingestor.sink.postgres import classify


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError(), DatabaseUnavailable),
        (asyncpg.exceptions.AdminShutdownError(), DatabaseUnavailable),
        (asyncpg.exceptions.CannotConnectNowError(), DatabaseUnavailable),
        (asyncpg.exceptions.DeadlockDetectedError(), DatabaseUnavailable),
        (asyncpg.exceptions.SerializationError(), DatabaseUnavailable),
        (asyncpg.exceptions.TooManyConnectionsError(), DatabaseUnavailable),
        (asyncpg.exceptions.StringDataRightTruncationError(), RowRejected),
        (asyncpg.exceptions.CheckViolationError(), RowRejected),
        (asyncpg.exceptions.NotNullViolationError(), RowRejected),
        (asyncpg.exceptions.RaiseError(), RowRejected),  # a DBA's trigger: bisected
        (asyncpg.exceptions.UndefinedFunctionError(), RowRejected),  # a trigger's own bug
        (asyncpg.exceptions.ReadOnlySQLTransactionError(), DatabaseUnavailable),  # failover
        (asyncpg.exceptions.LockNotAvailableError(), DatabaseUnavailable),
        (asyncpg.exceptions.QueryCanceledError(), StatementTimeout),
        (asyncpg.exceptions.UndefinedTableError(), DatabaseError),
        (asyncpg.exceptions.UndefinedColumnError(), DatabaseError),
        (asyncpg.exceptions.InvalidCatalogNameError(), DatabaseError),
        (asyncpg.exceptions.InvalidColumnReferenceError(), DatabaseError),
        (asyncpg.exceptions.InsufficientPrivilegeError(), DatabaseError),
        (asyncpg.exceptions.InvalidPasswordError(), DatabaseError),
        (ConnectionRefusedError(), DatabaseUnavailable),
        (TimeoutError(), DatabaseUnavailable),
        (asyncpg.InterfaceError("connection is closed"), DatabaseUnavailable),
    ],
)
def test_errors_are_classified_by_sqlstate(error: BaseException, kind: type) -> None:
    assert type(classify(error)) is kind


def test_a_row_error_names_the_constraint_but_no_value() -> None:
    error = asyncpg.exceptions.CheckViolationError('new row violates "no_evil": 10.1.2.3')
    error.constraint_name = "no_evil"  # type: ignore[attr-defined]
    mapped = classify(error)
    assert isinstance(mapped, RowRejected)
    assert mapped.sqlstate == "23514"
    assert "no_evil" in str(mapped)
    assert "10.1.2.3" not in str(mapped)


def test_a_refusal_keeps_the_servers_message_without_its_values() -> None:
    # A DBA's trigger puts the row's values in its message; the reject's reason keeps the
    # message's words and the names the error reports, never a value
    error = asyncpg.exceptions.RaiseError(
        'device 593-47-5928 at 10.1.2.3 (fe80::1) of "bob@example.com" refused by "guard"'
    )
    error.table_name = "user_logins"  # type: ignore[attr-defined]
    error.constraint_name = "guard"  # type: ignore[attr-defined]
    reason = str(classify(error))
    assert "refused by" in reason
    assert '"guard"' in reason
    for value in ("593-47-5928", "10.1.2.3", "fe80::1", "bob@example.com"):
        assert value not in reason
