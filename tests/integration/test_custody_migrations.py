"""Migrations that change a stored format of the custody tables: rows stored before them
are rewritten in place (never dropped), and what they held in plaintext is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
import pytest_asyncio

from ingestor.sink.queries import migrations, query
from ingestor.sink.schema import migrate, schema_problems
from tests.integration.helpers import find_plaintext

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TOKEN_IP, TOKEN_DEVICE = "a" * 63 + "1", "b" * 63 + "2"
ADDRESS, DEVICE = "203.0.113.77", "123-45-6789"


@pytest_asyncio.fixture
async def at_0003(empty_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A database migrated as the previous release left it: up to 0003."""
    connection = await asyncpg.connect(empty_database)
    await connection.execute(query("migrations_table"))
    for name, sql in migrations():
        if name <= "0003":
            await connection.execute(sql)
            await connection.execute(query("record_migration"), name)
    yield connection
    await connection.close()


LEGACY_REJECT = (
    "INSERT INTO ingestor_rejects (message_id, reason_code, reason, body, body_kind,"
    " body_bytes, body_digest, sent_at, receive_count, pii_tokens)"
    " VALUES ($1, 'invalid_locale', 'r', $2, $3, 10, 'd', now(), 1, $4)"
)


async def test_reject_bodies_stored_under_the_deny_list_keep_only_the_allow_list(
    at_0003: asyncpg.Connection,
) -> None:
    # Given rejects stored by the previous release: PII-named keys masked at any depth,
    # everything else as sent (an address under another name, in free text), a body the
    # JSON functions cannot read, and a refused row
    db = at_0003
    legacy = {
        "user_id": "u-1",
        "device_type": "ios",
        "locale": "x" * 40,
        "app_version": "2.3.0",
        "ip": TOKEN_IP,
        "device_id": None,
        "client_ip": ADDRESS,
        "note": f"my id is {DEVICE}",
        "nested": {"device_id": TOKEN_DEVICE, "addr": ADDRESS},
        "203.0.113.77": True,
    }
    await db.execute(
        LEGACY_REJECT, "m1", orjson.dumps(legacy).decode(), "object", [TOKEN_IP, TOKEN_DEVICE]
    )
    await db.execute(
        LEGACY_REJECT, "m2", '{"user_id": "a\\u0000b", "x": "' + ADDRESS + '"}', "object", []
    )
    row = orjson.dumps({"message_id": "m3", "user_id": "u-3", "masked_ip": TOKEN_IP}).decode()
    await db.execute(LEGACY_REJECT, "m3", row, "row", [TOKEN_IP])
    # When the database is migrated
    applied = await migrate(db)
    assert "0004_reject_allow_list" in applied
    assert await schema_problems(db) == []
    # Then each body keeps only the allow-list, in its order
    body = orjson.loads(
        await db.fetchval("SELECT body FROM ingestor_rejects WHERE message_id = 'm1'")
    )
    assert body == {
        "user_id": "u-1",
        "device_type": "ios",
        "locale": {"type": "string", "size": 40},
        "app_version": "2.3.0",
        "ip": TOKEN_IP,
        "device_id": None,
        "client_ip": {"type": "string", "size": len(ADDRESS)},
        "note": {"type": "string", "size": len(f"my id is {DEVICE}")},
        "nested": {"type": "object", "size": 2},
        "#10": {"type": "boolean", "size": 0, "name_size": len(ADDRESS)},
    }
    # And the unreadable body keeps nothing, the refused row stays as it was, the token
    # lists stay (erasure finds the rejects by them)
    assert await db.fetchval("SELECT body FROM ingestor_rejects WHERE message_id = 'm2'") is None
    assert await db.fetchval("SELECT body FROM ingestor_rejects WHERE message_id = 'm3'") == row
    tokens = await db.fetchval("SELECT pii_tokens FROM ingestor_rejects WHERE message_id = 'm1'")
    assert tokens == [TOKEN_IP, TOKEN_DEVICE]
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == 3
    # And no plaintext is left in any table
    assert await find_plaintext(db, {ADDRESS, DEVICE}) == []
