"""The PostgreSQL sink: one transaction per batch, upserts, and rows the database refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
import pytest_asyncio

from ingestor.custody.ledger import ErasureLedger
from ingestor.errors import RowRejected
from ingestor.sink.isolation import Batch, refused_row, split_outcomes, write_isolating
from ingestor.sink.postgres import PostgresSink, create_pool
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.fakes import envelopes

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

MASKER = HmacMasker(b"s" * 32)
TRANSFORMER = Transformer(MASKER)


@pytest_asyncio.fixture
async def sink(database: str) -> AsyncIterator[PostgresSink]:
    pool = await create_pool(database, 2)
    yield PostgresSink(pool, ErasureLedger(MASKER))
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
    result, refused = await write_isolating(
        sink, rows, rejects, Batch(processed, TRANSFORMER.digest)
    )
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
        fresh = PostgresSink(pool, ErasureLedger(MASKER))
        processed = batch(["ios", "android", "web"])
        rows, rejects = split_outcomes(processed)
        result, refused = await write_isolating(
            fresh, rows, rejects, Batch(processed, TRANSFORMER.digest)
        )
    finally:
        await pool.close()
    assert result.inserted == 2
    assert [r.reason_code for r in refused] == ["db_22001"]


async def test_columns_of_the_analysts_own_keep_their_defaults(
    sink: PostgresSink, db: asyncpg.Connection
) -> None:
    # Given an analysts' table with an identity key and a NOT NULL column with a default
    await db.execute("ALTER TABLE user_logins ADD COLUMN id bigserial PRIMARY KEY")
    await db.execute(
        "ALTER TABLE user_logins ADD COLUMN loaded_at timestamptz NOT NULL DEFAULT now()"
    )
    # When a batch is written
    rows, rejects = split_outcomes(batch(["ios", "web"]))
    result = await sink.write(rows, rejects)
    # Then the rows load and the database fills its own columns
    assert result.inserted == 2
    assert await db.fetchval("SELECT count(*) FROM user_logins WHERE loaded_at IS NOT NULL") == 2


async def test_a_message_is_never_in_both_tables(
    sink: PostgresSink, db: asyncpg.Connection
) -> None:
    # Given a message that was rejected in one delivery and loads in the next (for example
    # after a DBA dropped the constraint that refused it), and the other way round
    processed = batch(["ios", "web"])
    rows, _ = split_outcomes(processed)
    reject_of_first = refused_row(
        rows[0], RowRejected("23514", "CheckViolationError"), processed[0], TRANSFORMER.digest
    )
    await sink.write([], [reject_of_first])
    await sink.write([rows[1]], [])
    # When both are written again the other way
    await sink.write([rows[0]], [])
    await sink.write(
        [], [refused_row(rows[1], RowRejected("23514", "x"), processed[1], TRANSFORMER.digest)]
    )
    # Then each message is in exactly one table
    loaded = {r["message_id"] for r in await db.fetch("SELECT message_id FROM user_logins")}
    rejected = {r["message_id"] for r in await db.fetch("SELECT message_id FROM ingestor_rejects")}
    assert (loaded, rejected) == ({"m0"}, {"m1"})
