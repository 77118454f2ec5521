"""Postgres errors are classified by SQLSTATE, and their texts carry no values."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from ingestor.errors import (
    DatabaseError,
    DatabaseUnavailable,
    RowRejected,
    StatementTimeout,
    TransientError,
)
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


def routing_failure(message: str = 'no partition of relation "user_logins" found for row') -> Any:
    """What PostgreSQL raises for a row whose partition key no partition holds: 23514
    with the partitioned table named and no constraint (its DETAIL quotes the key)."""
    error = asyncpg.exceptions.CheckViolationError(message)
    error.schema_name = "public"  # type: ignore[attr-defined]
    error.table_name = "user_logins"  # type: ignore[attr-defined]
    error.detail = "Partition key of the failing row contains (create_date) = (2030-01-01)."  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    "message",
    [
        'no partition of relation "user_logins" found for row',
        # lc_messages in German: the message is no guide, the fields are
        'keine Partition von Relation "user_logins" für Zeile gefunden',
    ],
)
def test_a_row_whose_date_has_no_partition_is_not_a_refused_row(message: str) -> None:
    # A routing failure is the table's layout, not the row: it must never become a
    # db_23514 reject, but a transient failure of the batch
    mapped = classify(routing_failure(message))
    assert not isinstance(mapped, RowRejected)
    assert isinstance(mapped, TransientError)
    assert "user_logins" in str(mapped)
    assert "2030" not in str(mapped)  # the server's detail quotes the key: never repeated


def test_a_check_constraint_is_still_a_refused_row_whatever_the_language() -> None:
    error = asyncpg.exceptions.CheckViolationError('neue Zeile verletzt "no_evil"')
    error.table_name = "user_logins"  # type: ignore[attr-defined]
    error.constraint_name = "no_evil"  # type: ignore[attr-defined]
    assert isinstance(classify(error), RowRejected)
