"""The PostgreSQL sink: one transaction per batch, upserts, and rows the database refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
import pytest_asyncio

from ingestor.errors import RowRejected
from ingestor.masking import HmacMasker
from ingestor.postgres import PostgresSink, create_pool
from ingestor.transform import Transformer
from ingestor.writer import split_outcomes, write_isolating
from tests.fakes import envelopes

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TRANSFORMER = Transformer(HmacMasker(b"s" * 32))


@pytest_asyncio.fixture
async def sink(database: str) -> AsyncIterator[PostgresSink]:
    pool = await create_pool(database, 2)
    yield PostgresSink(pool)
    await pool.close()


def batch(device_types: list[str], start: int = 0) -> list:  # type: ignore[type-arg]
    bodies = [orjson.dumps({"user_id": "u", "device_type": d}).decode() for d in device_types]
    return [TRANSFORMER.process(e) for e in envelopes(bodies, start)]


async def test_writing_a_batch_twice_leaves_one_row_each(
    sink: PostgresSink, db: asyncpg.Connection
) -> None:
    rows, rejects = split_outcomes(batch(["ios"] * 5))
    first = await sink.write(rows, rejects)
    again = await sink.write(rows, rejects)
    assert (first.inserted, first.replaced) == (5, 0)
    assert (again.inserted, again.replaced) == (0, 5)
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 5


async def test_a_row_a_dba_constraint_refuses_is_isolated(
    sink: PostgresSink, db: asyncpg.Connection
) -> None:
    # Given a constraint the DBA added that one row of the batch breaks
    await db.execute("ALTER TABLE user_logins ADD CONSTRAINT no_evil CHECK (device_type <> 'evil')")
    processed = batch(["ios", "web", "evil", "android", "ios", "web", "ios"])
    rows, rejects = split_outcomes(processed)
    with pytest.raises(RowRejected):
        await sink.write(rows, rejects)
    # When the batch is written with isolation
    result, refused = await write_isolating(sink, rows, rejects, processed)
    # Then the other rows commit and the refused one is a reject with its SQLSTATE
    assert result.inserted == 6
    assert [r.message_id for r in refused] == ["m2"]
    stored = await db.fetchrow("SELECT reason_code, reason FROM ingestor_rejects")
    assert stored["reason_code"] == "db_23514"
    assert "no_evil" in stored["reason"]
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 6


async def test_a_narrowed_column_refuses_rows_at_copy(
    sink: PostgresSink, db: asyncpg.Connection, database: str
) -> None:
    # Given a DBA narrowed device_type after the pool's staging tables were made
    await db.execute("ALTER TABLE user_logins ALTER COLUMN device_type TYPE varchar(4)")
    pool = await create_pool(database, 1)
    try:
        fresh = PostgresSink(pool)
        processed = batch(["ios", "android", "web"])
        rows, rejects = split_outcomes(processed)
        result, refused = await write_isolating(fresh, rows, rejects, processed)
    finally:
        await pool.close()
    assert result.inserted == 2
    assert [r.reason_code for r in refused] == ["db_22001"]
