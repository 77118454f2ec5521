"""Creating and checking the tables: `ingestor migrate`, also run at start-up.

Migrations run in one transaction under an advisory lock, so several copies starting at
once apply each migration exactly once. They only create what is missing and add
columns and indexes; they never drop or retype an existing column.
"""

from __future__ import annotations

import logging
from typing import Any

from ingestor.sink.postgres import mapped_errors
from ingestor.sink.queries import migrations, query
from ingestor.table import USER_LOGINS

log = logging.getLogger("ingestor")

# pg_advisory_xact_lock key: "ingestor" as a number, so other applications' locks differ.
MIGRATION_LOCK = 0x696E676573746F72

# What `check` expects of the tables: column -> type, as format_type() prints it (the
# loaded table's from its registry).
EXPECTED_COLUMNS: dict[str, dict[str, str]] = {
    USER_LOGINS.name: USER_LOGINS.types(),
    "ingestor_rejects": {
        "message_id": "character varying(128)",
        "reason": "text",
        "pii_tokens": "character varying(256)[]",
        "sealed_body": "bytea",
        "user_digest": "character varying(64)",
    },
    "pii_vault": {"token": "character varying(256)", "sealed": "bytea"},
    "pii_reveal_audit": {
        "actor": "text",
        "claimed_actor": "text",
        "tokens": "character varying(256)[]",
        "hash": "character varying(64)",
    },
    "pii_audit_tokens": {"audit_id": "bigint", "token": "character varying(256)"},
    "ingestor_masking_key": {"mask_key_id": "character varying(32)"},
}


# Dropped after its migration ran: migrate does not run a migration twice.
MISSING_FUNCTION = (
    "function ingestor_app_version_text(integer) is missing (analysts' queries use it): "
    "run the SQL of migration 0009_app_version_text again (it creates only that function)"
)


async def migrate(connection: Any) -> list[str]:
    """Apply the migrations not yet applied; return their names. When none is pending it
    runs no DDL and takes no lock, so a user with only DML grants can start the service
    once a privileged user has run `ingestor migrate`."""
    async with mapped_errors():
        if not await _pending_migrations(connection):
            return []
    applied: list[str] = []
    async with mapped_errors(), connection.transaction():
        await connection.execute(query("lock_migrations"), MIGRATION_LOCK)
        await connection.execute(query("migrations_table"))
        done = {r["name"] for r in await connection.fetch(query("applied_migrations"))}
        for name, sql in migrations():
            if name not in done:
                await connection.execute(sql)  # a migration file's text
                await connection.execute(query("record_migration"), name)
                applied.append(name)
    for name in applied:
        log.info("applied migration %s", name, extra={"event": "migration", "migration": name})
    return applied


async def schema_problems(connection: Any) -> list[str]:
    """What is missing or different from what the ingestor needs; empty when all is well."""
    problems: list[str] = []
    async with mapped_errors():
        if not await connection.fetchval(query("migrations_table_exists")):
            return ["the database has no ingestor tables yet: run `ingestor migrate`"]
        pending = await _pending_migrations(connection)
        if pending:
            problems.append(f"migrations not applied: {', '.join(pending)} (run: ingestor migrate)")
        for table, expected in EXPECTED_COLUMNS.items():
            rows = await connection.fetch(query("schema_columns"), table)
            problems.extend(_column_problems(table, {r["name"]: r["type"] for r in rows}, expected))
        if not pending and not await connection.fetchval(query("unique_message_id")):
            problems.append("user_logins has no unique index on message_id (run: ingestor migrate)")
        if not pending and not await connection.fetchval(query("app_version_function")):
            problems.append(MISSING_FUNCTION)
    return problems


async def _pending_migrations(connection: Any) -> list[str]:
    if not await connection.fetchval(query("migrations_table_exists")):
        return [name for name, _ in migrations()]
    done = {r["name"] for r in await connection.fetch(query("applied_migrations"))}
    return [name for name, _ in migrations() if name not in done]


def _column_problems(table: str, actual: dict[str, str], expected: dict[str, str]) -> list[str]:
    if not actual:
        return [f"table {table} is missing"]
    return [
        f"{table}.{column} is {actual.get(column, 'missing')}, expected {kind}"
        for column, kind in expected.items()
        if actual.get(column) != kind
    ]
