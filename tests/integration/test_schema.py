"""`migrate`: idempotent, safe when several copies start at once, and kind to an existing
user_logins table (it adds, never drops or retypes)."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import pytest

from ingestor.sink.queries import migrations, query
from ingestor.sink.schema import MISSING_FUNCTION, migrate, schema_problems
from ingestor.transform.rules import app_version_number, app_version_text

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ANALYSTS_TABLE = """
CREATE TABLE user_logins(
    user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
    masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date
);
INSERT INTO user_logins VALUES ('old-user', 'ios', 'aa', 'bb', 'US', 1000000, '2020-01-01'),
                               ('old-user', 'ios', 'aa', 'bb', 'US', 1000000, '2020-01-01');
"""


async def test_an_existing_table_keeps_its_rows_and_gains_message_id(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await connection.execute(ANALYSTS_TABLE)
        await migrate(connection)
        rows = await connection.fetch("SELECT user_id, message_id FROM user_logins")
        assert [tuple(r) for r in rows] == [("old-user", None), ("old-user", None)]
        assert await schema_problems(connection) == []
    finally:
        await connection.close()


async def test_migrate_twice_changes_nothing(database: str) -> None:
    connection = await asyncpg.connect(database)
    try:
        assert await migrate(connection) == []
        assert await schema_problems(connection) == []
    finally:
        await connection.close()


async def test_copies_starting_at_once_migrate_once(empty_database: str) -> None:
    connections = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(c) for c in connections))
        every = len(migrations())
        assert sorted(len(names) for names in applied) == [0, 0, 0, every]
        assert await schema_problems(connections[0]) == []
    finally:
        for connection in connections:
            await connection.close()


async def test_check_on_an_empty_database_says_once_to_migrate(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        problems = await schema_problems(connection)
    finally:
        await connection.close()
    assert problems == ["the database has no ingestor tables yet: run `ingestor migrate`"]


async def test_check_names_what_is_missing_from_a_migrated_database(database: str) -> None:
    connection = await asyncpg.connect(database)
    try:
        await connection.execute("DROP TABLE ingestor_rejects CASCADE")
        problems = await schema_problems(connection)
    finally:
        await connection.close()
    assert "table ingestor_rejects is missing" in problems


async def test_a_user_with_only_dml_grants_can_start_once_migrated(database: str) -> None:
    # Given a migrated database and a service user that may only read and write rows
    owner = await asyncpg.connect(database)
    role = f"loader_{uuid.uuid4().hex[:8]}"
    try:
        await owner.execute(f"CREATE ROLE {role} LOGIN")
        await owner.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        await owner.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
        limited = await asyncpg.connect(database, user=role)
        try:
            # Then start-up's migrate runs no DDL and succeeds, and the check is clean
            assert await migrate(limited) == []
            assert await schema_problems(limited) == []
        finally:
            await limited.close()
    finally:
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.execute(f"DROP ROLE {role}")
        await owner.close()


async def test_check_reports_a_missing_unique_index(db: asyncpg.Connection) -> None:
    await db.execute("DROP INDEX user_logins_message_id_key")
    assert any("no unique index on message_id" in p for p in await schema_problems(db))


async def test_upgrading_lists_the_tokens_of_rejects_stored_before_the_vault(
    empty_database: str,
) -> None:
    # Given a database at the first version, holding a reject with two tokens in its body
    connection = await asyncpg.connect(empty_database)
    try:
        first_name, first_sql = migrations()[0]
        await connection.execute(query("migrations_table"))
        await connection.execute(first_sql)
        await connection.execute(query("record_migration"), first_name)
        ip_token, device_token = "a" * 64, "b" * 64
        body = f'{{"ip": "{ip_token}", "nested": {{"device_id": "{device_token}"}}}}'
        await connection.execute(
            "INSERT INTO ingestor_rejects (message_id, reason_code, reason, body, body_kind,"
            " body_bytes, body_digest, sent_at, receive_count)"
            " VALUES ('m1', 'missing_user_id', 'r', $1, 'object', 10, 'd', now(), 1)",
            body,
        )
        # When it is migrated to the current version
        await migrate(connection)
        # Then the reject lists its tokens, so erasure and rotation reach it
        tokens = await connection.fetchval("SELECT pii_tokens FROM ingestor_rejects")
        assert sorted(tokens) == [ip_token, device_token]
    finally:
        await connection.close()


async def test_the_version_function_spells_versions_as_the_python_twin(
    db: asyncpg.Connection,
) -> None:
    # Every version of the first thousands and of the last, a spread between, and the
    # numbers no version gives: the SQL function and the Python twin agree on each
    spread = random.Random(9).sample(range(1_000_000_000), 20_000)
    edges = [-(2**31), -1_000_000, -1, 999_999_999, 1_000_000_000, 2**31 - 1]
    values = [*range(0, 5_000), *range(999_995_000, 1_000_000_000), *spread, *edges]
    spelled = await db.fetch(
        "SELECT v, ingestor_app_version_text(v) AS text FROM unnest($1::integer[]) AS v", values
    )
    assert len(spelled) == len(values)
    for row in spelled:
        assert row["text"] == _python_text(row["v"]), row["v"]
    # NULL is NULL, and every way of writing a version reads back as one spelling
    assert await db.fetchval("SELECT ingestor_app_version_text(NULL)") is None
    for sent in ("2.00", "2.0", "2", "2.0.0"):
        number = app_version_number(sent)
        assert await db.fetchval("SELECT ingestor_app_version_text($1)", number) == "2.0.0"
    assert await db.fetchval("SELECT ingestor_app_version_text(96000)") == "0.96.0"
    # IMMUTABLE: usable in an index on the table
    await db.execute("CREATE INDEX ON user_logins (ingestor_app_version_text(app_version))")


def _python_text(number: int) -> str | None:
    try:
        return app_version_text(number)
    except ValueError:
        return None


async def test_check_reports_a_dropped_version_function(db: asyncpg.Connection) -> None:
    assert await schema_problems(db) == []
    await db.execute("DROP FUNCTION ingestor_app_version_text(integer)")
    assert await schema_problems(db) == [MISSING_FUNCTION]
    # The migration's own SQL puts it back, as the message says
    (sql,) = [sql for name, sql in migrations() if name == "0009_app_version_text"]
    await db.execute(sql)
    assert await schema_problems(db) == []
